package jsonrpc

import (
	"context"
	"testing"

	"github.com/nexo-project/nexo/service"
)

// BenchmarkHandleAdd is the JSON-RPC door's own cost for one math.add,
// without the network: decoding the request, running the method and
// encoding the answer (the part issue 17's web target asks to profile
// first: go test -bench HandleAdd -cpuprofile cpu.out ./internal/jsonrpc).
func BenchmarkHandleAdd(b *testing.B) {
	r := newRPC(b)
	caller := &service.Caller{}
	msg := []byte(`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		out, _ := r.Handle(ctx, caller, msg)
		if len(out) == 0 {
			b.Fatal("no answer")
		}
	}
}

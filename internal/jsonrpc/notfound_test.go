package jsonrpc

import (
	"context"
	"strings"
	"testing"

	"github.com/nexo-project/nexo/service"
)

// TestHugeUnknownMethod: the answer to an unknown method with a huge name
// does not send the name back whole (a name of '<' was 6 times larger
// once escaped: an amplifier).
func TestHugeUnknownMethod(t *testing.T) {
	r := newRPC(t)
	name := strings.Repeat("<", 100_000)
	out, _ := r.Handle(context.Background(), &service.Caller{}, []byte(`{"jsonrpc":"2.0","method":"`+name+`","id":1}`))
	if len(out) > 2000 || !strings.Contains(string(out), "method not found: ") || !strings.Contains(string(out), `..."`) {
		t.Errorf("answer of %d bytes: %.200s", len(out), out)
	}
	out, _ = r.Handle(context.Background(), &service.Caller{}, []byte(`{"jsonrpc":"2.0","method":"no.such","id":1}`))
	if !strings.Contains(string(out), `"method not found: no.such"`) {
		t.Errorf("a short name is said whole: %s", out)
	}
}

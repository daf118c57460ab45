package backplane

import (
	"testing"

	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/wire"
)

// benchForwarded sends b.N math.add requests through gateway → NATS →
// worker, depth at a time on one connection, and checks every answer.
func benchForwarded(b *testing.B, depth int) {
	ns := startNATS(b, "127.0.0.1:0")
	startWorker(b, ns.URL())
	g := startGateway(b, ns.URL(), "bench", 0)
	c, _ := nexotest.Hello(b, g.Native, "bench")
	var req []byte
	for i := range depth {
		req = wire.AppendRequest(req, uint32(i+1), "math.add", calc.AppendOperands(nil, 40, 2))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += depth {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		for range depth {
			f, err := c.Rd.ReadFrame()
			if err != nil {
				b.Fatal(err)
			}
			if f.Type != wire.TypeResponse || len(f.Body) != 8 || f.Body[7] != 42 {
				b.Fatalf("answer %s", nexotest.String(f))
			}
		}
	}
}

// BenchmarkForwardedRoundTrip is one request at a time.
func BenchmarkForwardedRoundTrip(b *testing.B) { benchForwarded(b, 1) }

// BenchmarkForwardedPipelined16 keeps 16 requests in flight: they travel
// as batches.
func BenchmarkForwardedPipelined16(b *testing.B) { benchForwarded(b, 16) }

package server_test

import (
	"context"
	"encoding/binary"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/legacy"
	. "github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/internal/tracing"
	"github.com/nexo-project/nexo/wire"
)

// benchRoundTrips sends depth requests at a time over one raw loopback
// connection and reads their answers. The benchmark side allocates nothing,
// so allocs/op is what the server allocates per request.
func benchRoundTrips(b *testing.B, depth int) {
	srv := Start(b, server.Config{})
	c, _ := Hello(b, srv.Native, "bench")
	var burst []byte
	for i := range depth {
		burst = wire.AppendRequest(burst, uint32(i+1), "math.add", Operands(1, 2))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += depth {
		c.Send(burst)
		for range depth {
			f, err := c.Rd.ReadFrame()
			if err != nil || f.Type != wire.TypeResponse {
				b.Fatalf("%v %v", f.Type, err)
			}
		}
	}
}

// BenchmarkRoundTrip: one request at a time (latency-bound).
func BenchmarkRoundTrip(b *testing.B) { benchRoundTrips(b, 1) }

// BenchmarkPipelined16: 16 requests per write (throughput-bound).
func BenchmarkPipelined16(b *testing.B) { benchRoundTrips(b, 16) }

// BenchmarkLegacyRoundTrip: the legacy door, one packet at a time.
func BenchmarkLegacyRoundTrip(b *testing.B) {
	srv := Start(b, server.Config{})
	c := Dial(b, srv.Legacy)
	packet := legacy.Append(nil, binary.LittleEndian, "SUMA", 1, 2)
	reply := make([]byte, 2)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.Send(packet)
		if _, err := c.Conn.Read(reply); err != nil || string(reply) != "3\n" {
			b.Fatalf("%q %v", reply, err)
		}
	}
}

// BenchmarkClientAdd: the Go client library's typed call, sequential.
func BenchmarkClientAdd(b *testing.B) {
	c := benchClient(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Add(ctx, 1, 2); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClientAddParallel: many goroutines pipelining over one client.
func BenchmarkClientAddParallel(b *testing.B) {
	c := benchClient(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Add(ctx, 1, 2); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchClient connects the Go client library to a fresh server.
func benchClient(b *testing.B) *client.Client {
	srv := Start(b, server.Config{})
	c, err := client.Dial(context.Background(), srv.Native, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// TestTracingCostsNothingOff: with no tracer configured (tracing off, the
// default), a request allocates nothing in the server; with one, it does,
// which shows the measure can tell.
func TestTracingCostsNothingOff(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations over thousands of requests")
	}
	allocs := func(cfg server.Config) float64 {
		srv := Start(t, cfg)
		c, _ := Hello(t, srv.Native, "allocs")
		req := wire.AppendRequest(nil, 1, "math.add", Operands(1, 2))
		return testing.AllocsPerRun(2000, func() {
			c.Send(req)
			if f, err := c.Rd.ReadFrame(); err != nil || f.Type != wire.TypeResponse {
				t.Fatalf("%v %v", f.Type, err)
			}
		})
	}
	if got := allocs(server.Config{}); got != 0 {
		t.Errorf("tracing off: %v allocations per request, want 0", got)
	}
	tp := tracing.NewProvider("test", sdktrace.WithSyncer(tracetest.NewInMemoryExporter()))
	defer tp.Shutdown(context.Background())
	if got := allocs(server.Config{Tracer: tracing.Tracer(tp, "test")}); got < 1 {
		t.Errorf("tracing on: %v allocations per request; the measure cannot tell", got)
	}
}

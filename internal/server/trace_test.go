package server_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	. "github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/internal/tracing"
	"github.com/nexo-project/nexo/wire"
)

// TestTraceFlag: the TRACE flag is an extension a client must ask for in
// HELLO. Without asking it is an unknown bit, BAD_FRAME as version 1
// says; asked, WELCOME grants it, and a REQUEST's trace context becomes
// the parent of the server's span for it (an invalid one is ignored). A
// call to a method that does not exist gets a span of a fixed name.
func TestTraceFlag(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := tracing.NewProvider("test", sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	srv := Start(t, server.Config{Tracer: tracing.Tracer(tp, "test")})
	traceID := []byte("0123456789abcdef")
	spanID := []byte("span-id!")
	field := append(append(append([]byte(nil), traceID...), spanID...), 1)

	t.Run("not asked", func(t *testing.T) {
		c, w := Hello(t, srv.Native, "plain")
		if w.Trace {
			t.Error("WELCOME granted a trace context nobody asked for")
		}
		c.Send(wire.AppendRequestFlags(nil, 1, wire.FlagTrace, 0, field, "math.add", Operands(1, 2)))
		f := c.Read()
		if we, _ := wire.ParseError(f.Body); f.Type != wire.TypeError || we.Code != wire.CodeBadFrame {
			t.Fatalf("got %v %q, want BAD_FRAME", f.Type, f.Body)
		}
		c.ExpectClosed()
	})

	t.Run("asked", func(t *testing.T) {
		c := Dial(t, srv.Native)
		if w := c.Hello(wire.Hello{Name: "traced", Trace: true}); !w.Trace {
			t.Fatal("WELCOME did not grant the trace context")
		}
		c.Send(wire.AppendRequestFlags(nil, 7, wire.FlagTrace|wire.FlagDeadline, 1000, field, "math.add", Operands(1, 2)))
		if f := c.Read(); f.Type != wire.TypeResponse || f.ID != 7 {
			t.Fatalf("got %v id %d %q, want RESPONSE 7", f.Type, f.ID, f.Body)
		}
		zero := make([]byte, wire.TraceLen)
		c.Send(wire.AppendRequestFlags(nil, 8, wire.FlagTrace, 0, zero, "math.sub", Operands(1, 2)))
		if f := c.Read(); f.Type != wire.TypeResponse || f.ID != 8 {
			t.Fatalf("got %v id %d %q, want RESPONSE 8", f.Type, f.ID, f.Body)
		}
		c.Send(wire.AppendRequestFlags(nil, 9, wire.FlagTrace, 0, field, "no.such.method", nil))
		if f := c.Read(); f.Type != wire.TypeError || f.ID != 9 {
			t.Fatalf("got %v id %d %q, want ERROR 9", f.Type, f.ID, f.Body)
		}
		spans := map[string]tracetest.SpanStub{}
		for _, s := range exp.GetSpans() {
			spans[s.Name] = s
		}
		add, sub := spans["math.add"], spans["math.sub"]
		if got := add.SpanContext.TraceID(); string(got[:]) != string(traceID) {
			t.Errorf("math.add's span is in trace %s, want the request's", got)
		}
		if got := add.Parent.SpanID(); string(got[:]) != string(spanID) || !add.Parent.IsRemote() {
			t.Errorf("math.add's span has parent %v, want the request's remote span", add.Parent)
		}
		if _, ok := spans[tracing.UnknownMethod]; !ok {
			t.Error("a call to an unknown method: no span named " + tracing.UnknownMethod)
		}
		if _, ok := spans["no.such.method"]; ok {
			t.Error("a span is named after a method that does not exist: callers could make names without end")
		}
		if !sub.SpanContext.IsValid() || sub.Parent.IsValid() {
			t.Errorf("math.sub with a zero trace context: span %v, parent %v; want a new trace", sub.SpanContext, sub.Parent)
		}
	})
}

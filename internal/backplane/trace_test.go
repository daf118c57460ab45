package backplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/tracing"
	"github.com/nexo-project/nexo/service"
)

// tracedProcess is what a process that traces holds: its tracer and the
// in-memory exporter its spans end up in.
type tracedProcess struct {
	exp    *tracetest.InMemoryExporter
	tracer trace.Tracer
}

func newTracedProcess(t *testing.T, role string) tracedProcess {
	exp := tracetest.NewInMemoryExporter()
	tp := tracing.NewProvider(role, sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tracedProcess{exp: exp, tracer: tracing.Tracer(tp, role)}
}

// span returns the one span named name, in the trace tid (any trace if
// tid is not valid), waiting for it to end.
func (p tracedProcess) span(t *testing.T, tid trace.TraceID, name string) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	nexotest.WaitFor(t, 5*time.Second, "span "+name, func() bool {
		found = found[:0]
		for _, s := range p.exp.GetSpans() {
			if s.Name == name && (!tid.IsValid() || s.SpanContext.TraceID() == tid) {
				found = append(found, s)
			}
		}
		return len(found) > 0
	})
	if len(found) != 1 {
		t.Fatalf("%d spans named %q, want 1", len(found), name)
	}
	return found[0]
}

// hopName returns the name of the NATS hop's span in the trace tid,
// waiting for it to end.
func (p tracedProcess) hopName(t *testing.T, tid trace.TraceID) string {
	t.Helper()
	var name string
	nexotest.WaitFor(t, 5*time.Second, "the NATS hop's span", func() bool {
		for _, s := range p.exp.GetSpans() {
			if s.SpanContext.TraceID() == tid && s.SpanKind == trace.SpanKindClient && strings.HasPrefix(s.Name, "nats ") {
				name = s.Name
				return true
			}
		}
		return false
	})
	return name
}

// attr returns a span's attribute key as a string.
func attr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if a.Key == attribute.Key(key) {
			return a.Value.String()
		}
	}
	return ""
}

// TestTracing: a call that crosses processes is one trace. The client's
// span is the parent of the gateway's door span, which is the parent of
// the NATS hop, which is the parent of the worker's span, which holds the
// handler's: each process exports its own spans, as separate processes
// do, and they join by the trace context the native door, the HTTP door
// and the NATS headers carry. A failed call marks its spans as errors and
// the worker's log line about it carries the trace id.
func TestTracing(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	gwp, wp, cp := newTracedProcess(t, "nexo serve"), newTracedProcess(t, "nexo worker"), newTracedProcess(t, "client")

	logs := &nexotest.SyncBuffer{}
	fail := service.Method{Name: "test.fail", Handler: func(context.Context, service.Request, []byte) ([]byte, error) {
		return nil, errors.New("the disk is on fire")
	}}
	unseen := service.Method{Name: "test.unseen", Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
		return append(dst, req.Payload...), nil
	}}
	nc := dialNATS(t, ns.ClientURL())
	w, err := NewWorker(nc, workerRegistry([]service.Method{fail, unseen}), WorkerOptions{
		Version: "0.0.1", Tracer: wp.tracer, Log: slog.New(tracing.LogHandler(slog.NewTextHandler(logs, nil))),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	cfg := nexotest.FastConfig()
	cfg.Tracer = gwp.tracer
	g := startGatewayWith(t, ns.ClientURL(), "gw", 0, cfg)
	if err := nc.Flush(); err != nil { // the worker's subscriptions are in place
		t.Fatal(err)
	}
	// The gateway's catalog has gathered the worker's methods: whether its
	// first gather, as it started, came before the worker's subscriptions
	// is a race, and a method the catalog does not know yet takes another
	// way (the last subtest).
	nexotest.WaitFor(t, 5*time.Second, "the catalog to know test.fail", func() bool {
		g.gw.catalog.refresh()
		return g.gw.catalog.Method("test.fail") != nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, g.Native, &client.Options{Name: "traced", Trace: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	t.Run("native door", func(t *testing.T) {
		cctx, root := cp.tracer.Start(ctx, "client work")
		if got, err := c.Add(cctx, 2, 3); err != nil || got != 5 {
			t.Fatalf("add = %d, %v", got, err)
		}
		root.End()
		chain(t, root.SpanContext(), gwp, wp, "math.add", "nats nexo.svc.math.add", "native", "")
	})

	t.Run("HTTP door", func(t *testing.T) {
		cctx, root := cp.tracer.Start(ctx, "client HTTP work")
		req, _ := http.NewRequestWithContext(cctx, "POST", "http://"+g.Web+"/rpc", strings.NewReader(`{"jsonrpc":"2.0","method":"math.sub","params":[5,3],"id":1}`))
		req.Header.Set("Content-Type", "application/json")
		sc := root.SpanContext()
		req.Header.Set("traceparent", fmt.Sprintf("00-%s-%s-01", sc.TraceID(), sc.SpanID()))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		root.End()
		chain(t, sc, gwp, wp, "math.sub", "nats nexo.svc.math.sub", "http", "")
	})

	t.Run("a failure", func(t *testing.T) {
		cctx, root := cp.tracer.Start(ctx, "client failing work")
		if _, err := c.Call(cctx, "test.fail", nil); err == nil {
			t.Fatal("test.fail succeeded")
		}
		root.End()
		// test.fail is not built into the gateway: the cluster's catalog
		// knows it, and its stub forwards it as a built-in method's does.
		worker := chain(t, root.SpanContext(), gwp, wp, "test.fail", "nats nexo.svc.test.fail", "native", "INTERNAL")
		want := "trace_id=" + worker.SpanContext.TraceID().String()
		nexotest.WaitFor(t, 5*time.Second, "the worker's log line with "+want, func() bool {
			return strings.Contains(logs.String(), want)
		})
	})

	t.Run("a client that does not ask", func(t *testing.T) {
		plain, err := client.Dial(ctx, g.Native, &client.Options{Name: "untraced"})
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		cctx, root := cp.tracer.Start(ctx, "client work, not sent")
		if _, err := plain.Mul(cctx, 2, 3); err != nil {
			t.Fatal(err)
		}
		root.End()
		door := gwp.span(t, trace.TraceID{}, "math.mul")
		if door.Parent.IsValid() || door.SpanContext.TraceID() == root.SpanContext().TraceID() {
			t.Errorf("the door's span joined a trace the client did not send: parent %v", door.Parent)
		}
	})

	t.Run("a method the catalog does not know yet", func(t *testing.T) {
		// Between a worker's start and the gateway's next gather, the
		// gateway looks a method up when a call names it, and forwards it
		// by name, under a hop name that does not repeat the name the
		// caller sent.
		for attempt := 1; ; attempt++ {
			forget(t, g.gw.catalog, "test.unseen")
			cctx, root := cp.tracer.Start(ctx, "client work on a new method")
			if got, err := c.Call(cctx, "test.unseen", []byte("x")); err != nil || string(got) != "x" {
				t.Fatalf("test.unseen = %q, %v", got, err)
			}
			root.End()
			// A periodic gather that began between forget and the call
			// taught the catalog the method again, and the call took the
			// catalog's way: rare (a few milliseconds in CatalogEvery),
			// and a reason to try again, not a failure.
			if hop := gwp.hopName(t, root.SpanContext().TraceID()); hop != "nats (forwarded)" && attempt < 3 {
				t.Logf("the catalog learned test.unseen again before the call (hop %q); again", hop)
				continue
			}
			chain(t, root.SpanContext(), gwp, wp, "test.unseen", "nats (forwarded)", "native", "")
			break
		}
	})
}

// forget makes c forget a method, as if no gather had found it yet, at a
// moment when no gather is under way (the next periodic one is seconds
// away): the next call that names it looks it up.
func forget(t *testing.T, c *clusterCatalog, name string) {
	t.Helper()
	nexotest.WaitFor(t, 5*time.Second, "a moment between two gathers", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.gathering != nil {
			return false
		}
		delete(c.methods, name)
		c.at = time.Time{} // stale: a lookup gathers at once
		return true
	})
}

// chain checks the spans of one call across the processes: the gateway's
// door span (child of parent), its NATS hop (named hopName), the worker's
// span and its handler's; code is the result's name, empty for success.
// It returns the worker's span.
func chain(t *testing.T, parent trace.SpanContext, gwp, wp tracedProcess, method, hopName, door, code string) tracetest.SpanStub {
	t.Helper()
	tid := parent.TraceID()
	in := gwp.span(t, tid, method)
	hop := gwp.span(t, tid, hopName)
	worker := wp.span(t, tid, method)
	handler := wp.span(t, tid, "handler "+method)
	links := []struct {
		what          string
		child, parent trace.SpanContext
		childParent   trace.SpanContext
	}{
		{"the gateway's door span", in.SpanContext, parent, in.Parent},
		{"the NATS hop", hop.SpanContext, in.SpanContext, hop.Parent},
		{"the worker's span", worker.SpanContext, hop.SpanContext, worker.Parent},
		{"the handler's span", handler.SpanContext, worker.SpanContext, handler.Parent},
	}
	for _, l := range links {
		if l.child.TraceID() != parent.TraceID() || l.childParent.SpanID() != l.parent.SpanID() {
			t.Errorf("%s is in trace %s under span %s; want trace %s under %s", l.what,
				l.child.TraceID(), l.childParent.SpanID(), parent.TraceID(), l.parent.SpanID())
		}
	}
	if got := attr(in, "nexo.door"); got != door {
		t.Errorf("door span's nexo.door = %q, want %q", got, door)
	}
	if in.SpanKind != trace.SpanKindServer || hop.SpanKind != trace.SpanKindClient || worker.SpanKind != trace.SpanKindServer {
		t.Errorf("kinds: door %v, hop %v, worker %v", in.SpanKind, hop.SpanKind, worker.SpanKind)
	}
	for _, s := range []tracetest.SpanStub{in, hop, worker, handler} {
		if got := attr(s, "nexo.code"); got != code {
			t.Errorf("span %q: nexo.code %q, want %q", s.Name, got, code)
		}
		if failed := s.Status.Code == otelcodes.Error; failed != (code != "") {
			t.Errorf("span %q: status %v, want an error: %v", s.Name, s.Status, code != "")
		}
	}
	return worker
}

// TestTracingUnsampled: a gateway that traces but whose sampler leaves
// requests out batches them as when tracing is off, and exports nothing.
func TestTracingUnsampled(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	startWorker(t, ns.ClientURL())
	exp := tracetest.NewInMemoryExporter()
	tp := tracing.NewProvider("nexo serve", sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.NeverSample()))
	defer tp.Shutdown(context.Background())
	cfg := nexotest.FastConfig()
	cfg.Tracer = tracing.Tracer(tp, "nexo serve")
	g := startGatewayWith(t, ns.ClientURL(), "gw", 0, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, g.Native, &client.Options{Name: "unsampled"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var wg sync.WaitGroup
	for i := range int64(200) {
		wg.Go(func() {
			if got, err := c.Add(ctx, i, 1); err != nil || got != i+1 {
				t.Errorf("add(%d, 1) = %d, %v", i, got, err)
			}
		})
	}
	wg.Wait()
	st := g.gw.Stats()
	if st.Sent < 200 || st.Messages >= st.Sent {
		t.Errorf("%d requests in %d NATS messages: want them batched", st.Sent, st.Messages)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans exported; the sampler takes none", n)
	}
}

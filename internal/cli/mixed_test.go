package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/tracing"
	"github.com/nexo-project/nexo/wire"
)

// mixedBaseEnv names the commit of main whose binary plays the old
// version in TestMixedVersions; CI sets it (see .ci/run).
const mixedBaseEnv = "NEXO_MIXED_BASE"

// TestMixedVersions: a rolling upgrade mixes versions, so a gateway and a
// worker built from two commits of main must work together both ways.
// The old binary is built from $NEXO_MIXED_BASE, a commit from before
// tracing added the traceparent header to what travels over NATS. An old
// gateway forwards to a new worker (which traces); a new gateway forwards
// to an old worker, untraced (requests batched) and tracing every request
// (each travels alone with traceparent). In each, single, batched (or,
// traced, unbatched: the gateway's counts say which) and failing calls
// from the native door and POST /rpc are answered as by one version.
func TestMixedVersions(t *testing.T) {
	base := os.Getenv(mixedBaseEnv)
	if base == "" {
		t.Skip(mixedBaseEnv + " is not set: CI's mixed-version step sets it to an older commit of main")
	}
	dir := t.TempDir()
	oldSrc := filepath.Join(dir, "old")
	if err := os.Mkdir(oldSrc, 0o755); err != nil {
		t.Fatal(err)
	}
	archive := exec.Command("sh", "-c", "git archive "+base+" | tar -x -C "+oldSrc)
	archive.Dir = repoRoot
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", base, err, out)
	}
	oldBin, newBin := filepath.Join(dir, "nexo-old"), filepath.Join(dir, "nexo-new")
	for _, b := range []struct{ src, out string }{{oldSrc, oldBin}, {repoRoot, newBin}} {
		build := exec.Command("go", "build", "-buildvcs=false", "-o", b.out, "./cmd/nexo")
		build.Dir = b.src
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build in %s: %v\n%s", b.src, err, out)
		}
	}
	var exported atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" {
			exported.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()

	for _, mix := range []struct {
		name            string
		gateway, worker string
		traced          bool // the gateway traces: requests travel alone with traceparent
	}{
		{"old gateway, new worker", oldBin, newBin, false},
		{"new gateway, old worker", newBin, oldBin, false},
		{"new tracing gateway, old worker", newBin, oldBin, true},
	} {
		t.Run(mix.name, func(t *testing.T) {
			native, web, natsAddr := nexotest.FreeAddr(t), nexotest.FreeAddr(t), nexotest.FreeAddr(t)
			gwArgs := []string{mix.gateway, "serve", "--native-addr", native, "--legacy-addr", "", "--web-addr", web,
				"--admin-addr", "", "--nats-embedded", natsAddr, "--services", "none"}
			if mix.traced {
				gwArgs = append(gwArgs, "--otlp-endpoint", collector.URL)
			}
			gw := startChild(t, "gateway", gwArgs...)
			waitListening(t, native, gw)
			wArgs := []string{mix.worker, "worker", "--nats", "nats://" + natsAddr}
			if mix.worker == newBin {
				wArgs = append(wArgs, "--otlp-endpoint", collector.URL) // the old binary has no such flag
			}
			startChild(t, "worker", wArgs...)

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, native, &client.Options{Name: "mixed", Trace: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			tp := tracing.NewProvider("test", sdktrace.WithSyncer(tracetest.NewInMemoryExporter()))
			defer tp.Shutdown(context.Background())
			ctx, span := tracing.Tracer(tp, "test").Start(ctx, "mixed versions")
			defer span.End()
			nexotest.WaitFor(t, 20*time.Second, "the worker to answer through the gateway", func() bool {
				got, err := c.Add(ctx, 1, 1)
				return err == nil && got == 2
			})

			// Many calls at once: the gateway batches those it does not trace.
			var wg sync.WaitGroup
			errs := make(chan error, 200)
			for i := range int64(200) {
				wg.Go(func() {
					if got, err := c.Mul(ctx, i, 3); err != nil || got != 3*i {
						errs <- fmt.Errorf("mul(%d, 3) = %d, %v", i, got, err)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if _, err := c.Div(ctx, 1, 0); !errors.Is(err, wire.CodeDivisionByZero) {
				t.Errorf("div by zero: %v, want DIVISION_BY_ZERO", err)
			}
			if got := rpcCall(t, web, "math.sub", "[10,4]"); got != `{"result":6}` {
				t.Errorf("POST /rpc math.sub: %s", got)
			}
			if got := rpcCall(t, web, "math.add", "[9223372036854775807,1]"); !strings.Contains(got, `"name":"OVERFLOW"`) {
				t.Errorf("POST /rpc overflow: %s", got)
			}
			// What the gateway sent: batches when it does not trace, each
			// request alone when it traces them all.
			raw, err := c.Call(ctx, "sys.cluster", nil)
			if err != nil {
				t.Fatal(err)
			}
			var cl struct {
				Gateways []struct {
					Forward struct{ Sent, Messages uint64 }
				}
			}
			if err := json.Unmarshal(raw, &cl); err != nil || len(cl.Gateways) != 1 {
				t.Fatalf("sys.cluster: %v %s", err, raw)
			}
			f := cl.Gateways[0].Forward
			t.Logf("the gateway forwarded %d requests in %d NATS messages", f.Sent, f.Messages)
			if batched := f.Messages < f.Sent; batched == mix.traced {
				t.Errorf("%d requests in %d messages: batched %v, want %v", f.Sent, f.Messages, batched, !mix.traced)
			}
		})
	}
	if exported.Load() == 0 {
		t.Error("the tracing processes exported no traces: the traced path did not run")
	}
}

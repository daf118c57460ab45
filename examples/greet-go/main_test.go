package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/host"
	"github.com/nexo-project/nexo/internal/natsembed"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/wire"
)

// build builds the example once per test.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "greet-go")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// start runs the example; it gets SIGTERM when the test ends and must
// then exit 0.
func start(t *testing.T, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("greet-go %s: %v\n%s", args[0], err, logs.String())
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("greet-go %s did not stop on SIGTERM", args[0])
		}
	})
}

// dial connects to a native door, waiting for it to listen.
func dial(t *testing.T, addr string) *client.Client {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := client.Dial(ctx, addr, nil)
		cancel()
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func call(t *testing.T, c *client.Client, method, payload string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := c.Call(ctx, method, []byte(payload))
	return string(out), err
}

// TestServe: greet-go --serve embeds the whole server: greet.go answers on
// the native door and /rpc beside math, bad names are BAD_PAYLOAD naming
// the field, and SIGTERM stops it cleanly.
func TestServe(t *testing.T) {
	native, web := nexotest.FreeAddr(t), nexotest.FreeAddr(t)
	start(t, build(t), "--serve", "--native-addr", native, "--legacy-addr", "", "--web-addr", web, "--admin-addr", "")
	c := dial(t, native)
	if got, err := call(t, c, "greet.go", `{"name":"Ann"}`); err != nil || got != `{"greeting":"Hello, Ann!"}` {
		t.Errorf("greet.go: %s %v", got, err)
	}
	for _, name := range []string{`""`, `"` + strings.Repeat("é", 65) + `"`, `7`} {
		if _, err := call(t, c, "greet.go", `{"name":`+name+`}`); !errors.Is(err, wire.CodeBadPayload) || !strings.Contains(err.Error(), "/name") {
			t.Errorf("greet.go %s: %v, want BAD_PAYLOAD naming /name", name, err)
		}
	}
	if got, err := c.Add(context.Background(), 40, 2); err != nil || got != 42 {
		t.Errorf("math.add beside it: %d %v", got, err)
	}
	resp, err := http.Post("http://"+web+"/rpc", "application/json",
		strings.NewReader(`{"jsonrpc":"2.0","method":"greet.go","params":{"name":"Bo"},"id":1}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != `{"jsonrpc":"2.0","result":{"greeting":"Hello, Bo!"},"id":1}`+"\n" {
		t.Errorf("greet.go on /rpc: %s", b)
	}
}

// TestWorker: greet-go --nats serves greet.go as a worker; a pure gateway
// (run here with package host, as a program of one's own would) learns it
// from the worker and answers it, and describes it. NATS stops before the
// worker gets its SIGTERM (the deferred Stop runs before the cleanups),
// and the worker must still exit 0 within the 10 s start allows.
func TestWorker(t *testing.T) {
	ns, err := natsembed.Start("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Stop()
	start(t, build(t), "--nats", ns.URL())

	native := nexotest.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- host.Serve(ctx, host.Options{Stdout: io.Discard, Stderr: io.Discard},
			[]string{"--nats", ns.URL(), "--services", "none", "--native-addr", native, "--legacy-addr", "", "--web-addr", "", "--admin-addr", ""})
	}()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("the gateway: %v", err)
		}
	}()
	c := dial(t, native)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := call(t, c, "greet.go", `{"name":"Ann"}`)
		if err == nil && got == `{"greeting":"Hello, Ann!"}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("greet.go through the gateway: %s %v", got, err)
		}
		time.Sleep(100 * time.Millisecond) // the worker may still be starting
	}
	if got, err := call(t, c, "sys.describe", `["greet.go"]`); err != nil || !strings.Contains(got, `"encoding":"json"`) {
		t.Errorf("sys.describe on the gateway: %s %v", got, err)
	}
	if _, err := call(t, c, "greet.gone", `{}`); !errors.Is(err, wire.CodeUnknownMethod) {
		t.Errorf("a method no worker serves: %v, want UNKNOWN_METHOD", err)
	}
}

// TestInREADME: the README shows this program whole, as it is.
func TestInREADME(t *testing.T) {
	code, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, append([]byte("```go\n"), code...)) {
		t.Error("README.md does not hold examples/greet-go/main.go as it is")
	}
}

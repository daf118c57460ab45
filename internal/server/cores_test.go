package server_test

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	. "github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/wire"
)

// TestCoreInUse: the servers of this run serve plain-TCP native
// connections on the core NEXO_TEST_CORE names, or on the default's (the
// event loops, on Linux). It is what makes TestGoroutineCore mean
// something.
func TestCoreInUse(t *testing.T) {
	want := os.Getenv("NEXO_TEST_CORE")
	if want == "" {
		want = server.CoreGoroutine
		if runtime.GOOS == "linux" {
			want = server.CoreLoop
		}
	}
	srv := Start(t, server.Config{})
	if got := srv.Core(); got != want {
		t.Fatalf("core %q, want %q", got, want)
	}
	// A connection that said HELLO is held without a goroutine on either
	// core: by a loop, or parked.
	c := Dial(t, srv.Native)
	c.Hello(wire.Hello{Name: "core"})
	WaitFor(t, 5*time.Second, "the client held without a goroutine", func() bool { return srv.Metric(t, "nexo_parked_clients", "") == 1 })
}

// TestGoroutineCore runs every test of this package again with the server
// on the goroutine core: the protocol cases, the conformance vectors and
// the fault cases then pass on both paths (this run is on the default,
// the event loops). The child is this test binary, with this run's flags
// (-race included, as it is built in).
func TestGoroutineCore(t *testing.T) {
	if os.Getenv("NEXO_TEST_CORE") != "" {
		t.Skip("already a run on one core")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the goroutine core is the only one here")
	}
	args := []string{"-test.skip", "^TestGoroutineCore$", "-test.count", "1"}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "NEXO_TEST_CORE="+server.CoreGoroutine)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the suite on the goroutine core: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "PASS") {
		t.Fatalf("the suite on the goroutine core did not pass:\n%s", out)
	}
}

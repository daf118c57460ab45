package server_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	. "github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
)

// TestPythonSeedClient runs the seed's own packing, in Python, against the
// legacy door: in the machine's order (as the seed did), and forced to
// little- and big-endian.
func TestPythonSeedClient(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is required for the interop test (CI installs it)")
	}
	srv := Start(t, server.Config{})
	host, port, _ := strings.Cut(srv.Legacy, ":")
	for _, order := range []string{"", "<", ">"} {
		t.Run("order"+order, func(t *testing.T) {
			out, err := exec.Command(python, "testdata/seed_client.py", host, port, "200", order).CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if lines := strings.Count(string(out), "\n"); lines != 207 {
				t.Errorf("%d replies checked, want 207:\n%s", lines, out)
			}
		})
	}
	WaitFor(t, 5*time.Second, "python clients gone", func() bool { return srv.ClientCount() == 0 })
	for _, ci := range srv.Clients().Closed {
		if ci.Door != "legacy" || ci.Reason != "client closed" || ci.Requests != 207 {
			t.Errorf("closed: %+v", ci)
		}
	}
}

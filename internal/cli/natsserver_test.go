//go:build !nonats

package cli

import (
	"strings"
	"testing"
)

// TestEmbeddedNATS: a pure gateway with its own NATS server, and a worker
// that joins it (not in the -tags nonats build).
func TestEmbeddedNATS(t *testing.T) {
	addrs := serveDoors(t, 5, nil, "--nats-embedded", "127.0.0.1:0", "--services", "none")
	if addrs["nats"] == "" {
		t.Fatalf("no NATS address reported: %v", addrs)
	}
	startWorker(t, "--nats", "nats://"+addrs["nats"])
	out, errOut, err := run(nil, "call", "--addr", addrs["native"], "math.add", "40", "2")
	if err != nil || strings.TrimSpace(out) != "42" {
		t.Fatalf("math.add through the embedded NATS: %q %q %v", out, errOut, err)
	}
}

package faults

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/nexo-project/nexo/internal/nexotest"
)

// hb is the heartbeat of the dead-peer tests. A peer silent for 2
// intervals plus a quarter is closed, and the check runs every quarter
// interval: the bound is 2.5 intervals.
const hb = 200 * time.Millisecond

// waitClosed waits for client id to be listed as closed and returns how
// long that took from start, failing past the heartbeat bound plus a
// scheduling allowance.
func waitClosed(t *testing.T, srv *Server, id uint64, start time.Time) {
	t.Helper()
	bound := 5*hb/2 + hb // the bound, plus an interval for scheduling on a loaded machine
	var reason string
	WaitFor(t, 10*time.Second, fmt.Sprintf("client %d closed", id), func() bool {
		for _, ci := range srv.Clients().Closed {
			if ci.ID == id {
				reason = ci.Reason
				return true
			}
		}
		return false
	})
	took := time.Since(start)
	t.Logf("closed after %v (%s); bound %v", took.Round(time.Millisecond), reason, 5*hb/2)
	if reason != "heartbeat timeout" {
		t.Errorf("closed as %q, want heartbeat timeout", reason)
	}
	if took > bound {
		t.Errorf("closed after %v, past the bound of %v", took, bound)
	}
}

// TestStoppedPeer: a client process frozen with SIGSTOP keeps its socket
// open and its kernel keeps acknowledging, so only heartbeats can tell it is
// gone; the server closes it within the heartbeat bound.
func TestStoppedPeer(t *testing.T) {
	cfg := FastConfig()
	cfg.Heartbeat = hb
	srv := Start(t, cfg)
	p := startChild(t, "idle", srv.Native)
	id, _ := strconv.ParseUint(p.ready, 10, 64)
	time.Sleep(3 * hb) // it answers PINGs while it runs
	if _, ok := srv.Client(id); !ok {
		t.Fatalf("the running child was closed: %+v", srv.Clients().Closed)
	}
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, srv, id, start)
}

// TestBlackholedPeer: a client in its own network namespace whose packets
// are then dropped by nftables (no FIN, no RST, nothing) is closed within
// the heartbeat bound. Needs root, ip and nft; CI has them.
func TestBlackholedPeer(t *testing.T) {
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil || os.Geteuid() != 0 {
			if os.Getenv("CI") != "" {
				t.Fatalf("needs root and %s (CI installs nftables)", tool)
			}
			t.Skipf("needs root and %s", tool)
		}
	}
	ns, hostIP := netns(t)
	cfg := FastConfig()
	cfg.Heartbeat = hb
	srv := Start(t, cfg)
	ln, err := net.Listen("tcp", hostIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeNative(ln) }()
	t.Cleanup(func() {
		_ = ln.Close()
		<-served
	})
	p := startChild(t, "idle", ln.Addr().String(), "ip", "netns", "exec", ns)
	id, _ := strconv.ParseUint(p.ready, 10, 64)
	time.Sleep(3 * hb)
	if _, ok := srv.Client(id); !ok {
		t.Fatalf("the connected child was closed: %+v", srv.Clients().Closed)
	}
	sh(t, "ip", "netns", "exec", ns, "nft", "-f", "-", `
table inet blackhole {
	chain in  { type filter hook input priority 0; policy drop; }
	chain out { type filter hook output priority 0; policy drop; }
}`)
	// Timed from when the rules are in: until then the peer still
	// answers, and starting a process on a loaded machine (ip, nft) can
	// take a good part of an interval, which the bound is not about.
	start := time.Now()
	waitClosed(t, srv, id, start)
}

// netns makes a network namespace joined to this one by a veth pair and
// returns its name and the host side's address; both go when the test ends.
func netns(t *testing.T) (ns, hostIP string) {
	t.Helper()
	n := os.Getpid() % 200
	ns = fmt.Sprintf("nexo-faults-%d", os.Getpid())
	host, peer := fmt.Sprintf("nxh%d", os.Getpid()), fmt.Sprintf("nxp%d", os.Getpid())
	hostIP, peerIP := fmt.Sprintf("10.211.%d.1", n), fmt.Sprintf("10.211.%d.2", n)
	sh(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", host).Run()
		_ = exec.Command("ip", "netns", "del", ns).Run()
	})
	sh(t, "ip", "link", "add", host, "type", "veth", "peer", "name", peer)
	sh(t, "ip", "link", "set", peer, "netns", ns)
	sh(t, "ip", "addr", "add", hostIP+"/24", "dev", host)
	sh(t, "ip", "link", "set", host, "up")
	sh(t, "ip", "netns", "exec", ns, "ip", "addr", "add", peerIP+"/24", "dev", peer)
	sh(t, "ip", "netns", "exec", ns, "ip", "link", "set", peer, "up")
	sh(t, "ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	return ns, hostIP
}

// sh runs a command; the last argument, when it starts with a newline, is
// its standard input instead.
func sh(t *testing.T, argv ...string) {
	t.Helper()
	var stdin string
	if last := argv[len(argv)-1]; strings.HasPrefix(last, "\n") {
		stdin, argv = last, argv[:len(argv)-1]
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

package faults

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/calc"
	. "github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// The test binary doubles as the child processes the tests need: with
// NEXO_FAULTS_CHILD set it runs that role instead of the tests.
func TestMain(m *testing.M) {
	if role := os.Getenv("NEXO_FAULTS_CHILD"); role != "" {
		os.Exit(child(role, os.Getenv("NEXO_FAULTS_ADDR")))
	}
	os.Exit(m.Run())
}

// child runs one role and prints "ready ..." on stdout once it is in place.
func child(role, addr string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	switch role {
	case "bare":
		// A process that starts and waits, touching no server: what
		// starting a child costs the machine by itself (env.spawn).
		fmt.Println("ready")
		<-ctx.Done()
		return 0
	case "idle":
		// A client that connects and then only answers PINGs.
		c, err := client.Dial(ctx, addr, &client.Options{Name: "child-idle"})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("ready %d\n", c.ID())
		<-ctx.Done()
		return 0
	case "pipeline":
		// A client that keeps 64 requests in flight without end.
		c, err := client.Dial(ctx, addr, &client.Options{Name: "child-pipeline"})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		done := make(chan int64, 64)
		for w := range 64 {
			go func() {
				var n int64
				for ctx.Err() == nil {
					if _, err := c.Add(ctx, int64(w), n); err != nil {
						break
					}
					n++
				}
				done <- n
			}()
		}
		time.Sleep(200 * time.Millisecond)
		fmt.Printf("ready %d\n", c.ID())
		<-ctx.Done()
		return 0
	case "inflight":
		// A client with 64 slow requests in flight, which costs the
		// server nothing until it dies.
		c, err := client.Dial(ctx, addr, &client.Options{Name: "child-inflight"})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for range 64 {
			go func() { _, _ = c.Call(ctx, "test.sleep", binary.BigEndian.AppendUint32(nil, 60000)) }()
		}
		time.Sleep(100 * time.Millisecond)
		fmt.Printf("ready %d\n", c.ID())
		<-ctx.Done()
		return 0
	case "fdserver":
		// A server allowed only 64 open files.
		lim := syscall.Rlimit{Cur: 64, Max: 64}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, nil))
		reg := service.NewRegistry()
		// A long heartbeat: the test's silent connections must stay.
		srv, err := server.New(server.Config{Heartbeat: time.Minute}, reg, log)
		if err != nil || reg.Register(calc.Methods()...) != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go func() { _ = srv.ServeNative(ln) }()
		fmt.Printf("ready %s\n", ln.Addr())
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown role", role)
	return 2
}

// process is a running child.
type process struct {
	cmd    *exec.Cmd
	ready  string // what followed "ready "
	stderr *SyncBuffer
}

// startChild runs the test binary in a role, prefixed by wrap (such as
// "ip netns exec NS"), and waits for it to be ready. It is killed when
// the test ends.
func startChild(t *testing.T, role, addr string, wrap ...string) *process {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := append(append([]string{}, wrap...), self, "-test.run=^$")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "NEXO_FAULTS_CHILD="+role, "NEXO_FAULTS_ADDR="+addr)
	p := &process{cmd: cmd, stderr: &SyncBuffer{}}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l, ok := <-line:
		if !ok || !strings.HasPrefix(l, "ready") {
			t.Fatalf("child %s: %q; stderr:\n%s", role, l, p.stderr)
		}
		p.ready = strings.TrimSpace(strings.TrimPrefix(l, "ready"))
	case <-time.After(20 * time.Second):
		t.Fatalf("child %s not ready; stderr:\n%s", role, p.stderr)
	}
	return p
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// hello is a HELLO frame.
func hello(name string) []byte {
	b, _ := wire.AppendJSON(nil, wire.TypeHello, wire.Hello{Name: name}) // a struct of strings marshals
	return b
}

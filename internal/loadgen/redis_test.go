package loadgen

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/nexo-project/nexo/internal/nexotest"
)

// TestRedisDoor drives a real redis-server with PINGs: answered ones count
// as operations, and a server that refuses them (it wants a password)
// shows as errors.
func TestRedisDoor(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no redis-server here (apt-get install redis-server)")
		}
		t.Skip("no redis-server here (apt-get install redis-server)")
	}
	for _, tt := range []struct {
		name   string
		args   []string
		errors bool
	}{
		{"open", nil, false},
		{"password", []string{"--requirepass", "secret"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := startRedis(t, bin, tt.args...)
			res, err := Run(context.Background(), Config{Addr: addr, Door: DoorRedis, Connections: 2, Pipeline: 4, Duration: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if res.Ops == 0 || (res.Errors != 0) != tt.errors || res.Door != DoorRedis {
				t.Errorf("result %+v; want errors: %v", res, tt.errors)
			}
		})
	}
}

// startRedis runs a redis-server without persistence on a free loopback
// port until the test ends, and returns its address.
func startRedis(t *testing.T, bin string, args ...string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	nexotest.WaitFor(t, 5*time.Second, "redis-server to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

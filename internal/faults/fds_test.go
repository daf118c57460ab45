package faults

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/wire"
)

// TestDescriptorExhaustion: a server allowed 64 open files is offered 100
// connections. It stays up, keeps serving the clients it has, backs off
// while accept fails (logging it), and accepts the waiting connections
// as soon as descriptors are freed.
func TestDescriptorExhaustion(t *testing.T) {
	p := startChild(t, "fdserver", "")
	addr := p.ready
	canary, err := client.Dial(context.Background(), addr, &client.Options{Name: "canary"})
	if err != nil {
		t.Fatal(err)
	}
	defer canary.Close()

	// Every connection completes its TCP handshake (the kernel's backlog);
	// only those the server could accept get a WELCOME.
	var conns, welcomed, waiting []net.Conn
	for range 100 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(hello("filler")); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	deadline := time.Now().Add(time.Second)
	for _, c := range conns {
		if welcome(c, deadline) {
			welcomed = append(welcomed, c)
		} else {
			waiting = append(waiting, c)
		}
	}
	t.Logf("%d welcomed, %d waiting for a descriptor", len(welcomed), len(waiting))

	if len(waiting) == 0 || len(welcomed) == 0 {
		t.Fatalf("%d welcomed, %d waiting: the limit did not bite as planned", len(welcomed), len(waiting))
	}
	if got, err := canary.Add(context.Background(), 20, 22); err != nil || got != 42 {
		t.Fatalf("an existing client while out of descriptors: %d %v", got, err)
	}
	if !strings.Contains(p.stderr.String(), "accept failed; retrying") {
		t.Errorf("no accept failure in the server's log:\n%s", p.stderr)
	}
	// Free descriptors: the waiting connections get their WELCOME.
	free := min(len(welcomed), len(waiting)+5)
	for _, c := range welcomed[:free] {
		c.Close()
	}
	for i, c := range waiting[:min(len(waiting), free-5)] {
		if !welcome(c, time.Now().Add(5*time.Second)) {
			t.Fatalf("waiting connection %d was not accepted once descriptors were free", i)
		}
	}
	if got, err := canary.Add(context.Background(), 1, 1); err != nil || got != 2 {
		t.Fatalf("canary after recovery: %d %v", got, err)
	}
}

// welcome reads one frame by the deadline and reports whether it is a
// WELCOME.
func welcome(c net.Conn, deadline time.Time) bool {
	_ = c.SetReadDeadline(deadline)
	f, err := wire.NewReader(c, 1<<16).ReadFrame()
	return err == nil && f.Type == wire.TypeWelcome
}

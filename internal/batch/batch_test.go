package batch

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pair returns both ends of a real loopback TCP connection.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// countingConn counts Write calls. When first is set, the first Write
// waits for it to return: commits then pile up behind that write.
type countingConn struct {
	net.Conn
	writes atomic.Int64
	first  func()
}

func (c *countingConn) Write(p []byte) (int, error) {
	if c.writes.Add(1) == 1 && c.first != nil {
		c.first()
	}
	return c.Conn.Write(p)
}

func (c *countingConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// TestCoalesces: data committed by many goroutines arrives complete, in
// fewer writes than commits, and CloseWrite ends the stream after it.
func TestCoalesces(t *testing.T) {
	a, b := pair(t)
	cc := &countingConn{Conn: a}
	w := New(cc, Options{})
	if err := w.Commit(append(w.Begin(), "xyz"...)); err != nil || w.Len() != 3 {
		t.Fatalf("Len() = %d after committing 3 bytes (%v)", w.Len(), err)
	}
	w.Close() // drops them: this writer is only for Len
	// The first write waits until a hundred commits came, so that batching
	// does not depend on how the scheduler runs the writer (without it the
	// test failed about once in 25 runs: every write went out alone).
	var commits atomic.Int64
	cc.first = func() {
		for deadline := time.Now().Add(5 * time.Second); commits.Load() < 100 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	w = New(cc, Options{})
	const producers, each = 8, 500
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if err := w.Commit(append(w.Begin(), byte('a'+p))); err != nil {
					t.Error(err)
					return
				}
				commits.Add(1)
				if p%2 == 0 {
					_ = w.Flush()
				} else {
					w.FlushAsync()
				}
			}
		}()
	}
	wg.Wait()
	w.CloseWrite()
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != producers*each {
		t.Fatalf("read %d bytes, want %d", len(got), producers*each)
	}
	for p := range producers {
		if n := bytes.Count(got, []byte{byte('a' + p)}); n != each {
			t.Errorf("producer %d: %d bytes arrived, want %d", p, n, each)
		}
	}
	if n := cc.writes.Load(); n >= producers*each {
		t.Errorf("%d writes for %d commits: nothing was batched", n, producers*each)
	}
	if w.Written() != producers*each || w.Len() != 0 {
		t.Errorf("Written() = %d, Len() = %d after the final flush", w.Written(), w.Len())
	}
	if err := w.Commit(append(w.Begin(), 'x')); !errors.Is(err, ErrClosed) {
		t.Errorf("commit after CloseWrite: %v", err)
	}
}

// TestOverflowAndStall: a peer that does not read fails the writer once,
// either by the pending limit or by the write timeout.
func TestOverflowAndStall(t *testing.T) {
	t.Run("pending limit", func(t *testing.T) {
		a, _ := pair(t)
		var calls atomic.Int64
		w := New(a, Options{Limit: 1000, OnError: func(err error) {
			if !errors.Is(err, ErrOverflow) {
				t.Errorf("OnError(%v)", err)
			}
			calls.Add(1)
		}})
		if err := w.Commit(append(w.Begin(), make([]byte, 1001)...)); !errors.Is(err, ErrOverflow) {
			t.Fatalf("commit past the limit: %v", err)
		}
		_ = w.Commit(append(w.Begin(), 1))
		if calls.Load() != 1 {
			t.Errorf("OnError called %d times", calls.Load())
		}
	})
	t.Run("write timeout", func(t *testing.T) {
		a, _ := pair(t) // the peer never reads
		failed := make(chan error, 1)
		w := New(a, Options{Timeout: 100 * time.Millisecond, OnError: func(err error) { failed <- err }})
		chunk := make([]byte, 1<<20)
		deadline := time.After(10 * time.Second)
		for {
			_ = w.Commit(append(w.Begin(), chunk...))
			if err := w.Flush(); err != nil {
				break
			}
			select {
			case <-deadline:
				t.Fatal("the write never stalled")
			default:
			}
		}
		select {
		case err := <-failed:
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("OnError(%v), want a timeout", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("OnError not called")
		}
	})
}

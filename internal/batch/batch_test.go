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

// TestFlushNow: what TryWrite takes goes at once; the rest is written by
// the writer's goroutine over the connection, in order, and resume is
// called once it is all written.
func TestFlushNow(t *testing.T) {
	a, b := pair(t)
	var tries atomic.Int64
	w := New(tryConn{a, func(p []byte) (int, error) {
		if tries.Add(1) == 1 {
			return a.Write(p) // the socket takes it all
		}
		return a.Write(p[:3]) // it takes three bytes, then is full
	}}, Options{})
	resumed := make(chan struct{})
	resume := func() { close(resumed) }

	_ = w.Commit(append(w.Begin(), "first."...))
	if !w.FlushNow(resume) {
		t.Fatal("FlushNow left output behind although TryWrite took it all")
	}
	_ = w.Commit(append(w.Begin(), "second, in two parts."...))
	if w.FlushNow(resume) {
		t.Fatal("FlushNow reported nothing left although TryWrite took 3 bytes")
	}
	select {
	case <-resumed:
	case <-time.After(5 * time.Second):
		t.Fatal("resume was not called once the rest was written")
	}
	if w.Len() != 0 || w.Written() != uint64(len("first.second, in two parts.")) {
		t.Fatalf("Len %d, Written %d", w.Len(), w.Written())
	}
	got := make([]byte, len("first.second, in two parts."))
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "first.second, in two parts." {
		t.Fatalf("read %q, %v", got, err)
	}
}

// TestFlushNowWhileTrying: a FlushNow that comes while FlushAsync's try
// is writing finds the writer busy and must be resumed once that try has
// written everything (it was not: the event loop never read the
// connection again).
func TestFlushNowWhileTrying(t *testing.T) {
	a, b := pair(t)
	inTry := make(chan struct{})
	goOn := make(chan struct{})
	var tries atomic.Int64
	w := New(tryConn{a, func(p []byte) (int, error) {
		if tries.Add(1) == 1 {
			close(inTry)
			<-goOn
		}
		return a.Write(p)
	}}, Options{})
	_ = w.Commit(append(w.Begin(), "ping"...))
	done := make(chan struct{})
	go func() { w.FlushAsync(); close(done) }()
	<-inTry
	resumed := make(chan struct{})
	_ = w.Commit(append(w.Begin(), "pong"...))
	if w.FlushNow(func() { close(resumed) }) {
		t.Fatal("FlushNow reported nothing left while another write was under way")
	}
	close(goOn)
	<-done
	select {
	case <-resumed:
	case <-time.After(5 * time.Second):
		t.Fatal("resume was not called after the try wrote everything")
	}
	got := make([]byte, 8)
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "pingpong" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// TestFlushNowFails: a TryWrite error fails the writer (OnError) and
// resumes a waiting FlushNow.
func TestFlushNowFails(t *testing.T) {
	a, _ := pair(t)
	boom := errors.New("boom")
	var failed atomic.Value
	w := New(tryConn{a, func([]byte) (int, error) { return 0, boom }}, Options{
		OnError: func(err error) { failed.Store(err) },
	})
	_ = w.Commit(append(w.Begin(), "x"...))
	if !w.FlushNow(func() { t.Error("resume called although nothing waits") }) {
		t.Fatal("a failed writer has nothing left to write")
	}
	if err, _ := failed.Load().(error); !errors.Is(err, boom) {
		t.Fatalf("OnError got %v", err)
	}
	if err := w.Commit(append(w.Begin(), "y"...)); !errors.Is(err, boom) {
		t.Fatalf("Commit after the failure: %v", err)
	}
}

// tryConn is a connection whose TryWrite is try.
type tryConn struct {
	net.Conn
	try func([]byte) (int, error)
}

func (c tryConn) TryWrite(p []byte) (int, error) { return c.try(p) }

// gatedConn holds its Writes until gate is closed, and says when one has
// begun.
type gatedConn struct {
	net.Conn
	began chan struct{}
	gate  chan struct{}
	once  sync.Once
}

func (c *gatedConn) Write(p []byte) (int, error) {
	c.once.Do(func() { close(c.began) })
	<-c.gate
	return c.Conn.Write(p)
}

// TestTryDrainKeepsBuffersApart: after TryWrite took a buffer larger than
// the writer keeps, the next partial write's rest and the commits made
// while the writer's goroutine writes it must not share an array: they
// did, and a commit overwrote the bytes on their way out.
func TestTryDrainKeepsBuffersApart(t *testing.T) {
	a, b := pair(t)
	gc := &gatedConn{Conn: a, began: make(chan struct{}), gate: make(chan struct{})}
	var tries atomic.Int64
	w := New(tryConn{gc, func(p []byte) (int, error) {
		if tries.Add(1) <= 2 {
			return a.Write(p) // the first two flushes go whole
		}
		return a.Write(p[:1]) // then the socket takes one byte
	}}, Options{})
	big := bytes.Repeat([]byte{'b'}, keepBuf+1)
	var want []byte
	for _, p := range [][]byte{[]byte("a"), big} {
		_ = w.Commit(append(w.Begin(), p...))
		if !w.FlushNow(func() {}) {
			t.Fatal("a whole write left output behind")
		}
		want = append(want, p...)
	}
	_ = w.Commit(append(w.Begin(), "xyz"...))
	resumed := make(chan struct{})
	if w.FlushNow(func() { close(resumed) }) {
		t.Fatal("a write of one byte left nothing behind")
	}
	<-gc.began // the writer's goroutine writes "yz" now
	_ = w.Commit(append(w.Begin(), "QQ"...))
	close(gc.gate)
	<-resumed
	w.FlushAsync()
	want = append(want, "xyzQQ"...)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[len(got)-5:], []byte("xyzQQ")) || !bytes.Equal(got, want) {
		t.Fatalf("the stream ends %q, want %q", got[len(got)-5:], "xyzQQ")
	}
}

// TestTrim: a writer gone idle lets its buffers go but one small one,
// which the frames of an idle connection (heartbeats) then reuse without
// allocating; with output pending, Trim leaves everything as it is.
func TestTrim(t *testing.T) {
	a, b := pair(t)
	go func() { _, _ = io.Copy(io.Discard, b) }()
	w := New(tryConn{a, a.Write}, Options{})
	send := func(p []byte) {
		_ = w.Commit(append(w.Begin(), p...))
		if !w.FlushNow(func() {}) {
			t.Fatal("the socket did not take a small write")
		}
	}
	send(make([]byte, 4096)) // a burst of answers
	send(make([]byte, 16))   // with a heartbeat after it: two buffers held
	w.Trim()
	if held := cap(w.pending) + cap(w.spare); held > trimKeep {
		t.Errorf("%d bytes of buffers held after Trim, want at most %d", held, trimKeep)
	}
	ping := make([]byte, 20)
	if n := testing.AllocsPerRun(100, func() { w.Trim(); send(ping) }); n != 0 {
		t.Errorf("%v allocations per heartbeat of an idle writer, want 0", n)
	}

	w.mu.Lock()
	w.pending = append(w.pending, "pending"...)
	w.mu.Unlock()
	w.Trim()
	if string(w.pending) != "pending" {
		t.Errorf("Trim with output pending left %q", w.pending)
	}
}

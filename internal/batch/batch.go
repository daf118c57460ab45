// Package batch coalesces writes to a connection. Producers append to a
// pending buffer without blocking; one goroutine at a time writes all that is
// pending in one syscall, and keeps writing until nothing is left. Under load
// many responses share one write; at low load each goes out at once.
package batch

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Errors that end a Writer.
var (
	// ErrClosed is returned after Close or CloseWrite.
	ErrClosed = errors.New("batch: writer closed")
	// ErrOverflow means pending output passed its limit: the peer is not
	// reading (a slow consumer).
	ErrOverflow = errors.New("batch: pending output over its limit")
)

// keepBuf is the largest buffer kept for reuse once written; larger ones
// (after a burst or a big frame) are released so an idle connection stays
// small.
const keepBuf = 64 << 10

// Options configure a Writer.
type Options struct {
	// Limit is the most bytes that may wait unwritten; past it the writer
	// fails with ErrOverflow. 0 means no limit.
	Limit int
	// Timeout bounds each write; a write stalled that long fails the
	// writer. 0 means no timeout.
	Timeout time.Duration
	// OnError is called once, from whichever goroutine noticed, when the
	// writer fails (write error, ErrOverflow). Not called for Close.
	OnError func(error)
}

// A TryWriter is a connection that can write without waiting, as an event
// loop's socket does. A Writer on one writes from the calling goroutine
// what the connection takes at once: FlushNow needs it, and Flush and
// FlushAsync try it before they wait or start a goroutine.
type TryWriter interface {
	// TryWrite writes as much of b as the connection takes at once: it
	// returns n < len(b) and a nil error when the connection's buffer is
	// full.
	TryWrite(b []byte) (n int, err error)
}

// Writer batches writes to one net.Conn.
type Writer struct {
	conn net.Conn
	opts Options

	mu        sync.Mutex
	pending   []byte // guarded by mu
	spare     []byte // guarded by mu
	writing   bool   // guarded by mu: a goroutine owns the conn's write side
	halfClose bool   // guarded by mu: CloseWrite once pending is written
	resume    func() // guarded by mu: called once the writing goroutine is done (FlushNow)
	err       error  // guarded by mu: sticky

	deadline int64 // unix ns of the write deadline set; owned by the goroutine with writing set
	written  atomic.Uint64
	queued   atomic.Int64 // len(pending), readable without mu
}

// New returns a Writer for conn.
func New(conn net.Conn, opts Options) *Writer {
	return &Writer{conn: conn, opts: opts}
}

// Written returns how many bytes were written to the connection.
func (w *Writer) Written() uint64 { return w.written.Load() }

// Begin locks the writer and returns the pending buffer; append to it and
// pass the result to Commit, which unlocks. Keep the section short.
func (w *Writer) Begin() []byte {
	w.mu.Lock()
	return w.pending
}

// Commit stores the buffer returned by Begin and extended by the caller, and
// unlocks. It does not write: call Flush or FlushAsync. It returns the
// writer's error, if any; the data is then dropped.
func (w *Writer) Commit(b []byte) error {
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.pending = b
	w.queued.Store(int64(len(b)))
	if w.opts.Limit > 0 && len(b) > w.opts.Limit {
		w.pending = b[:0]
		w.queued.Store(0)
		w.err = ErrOverflow
		w.mu.Unlock()
		w.notify(ErrOverflow)
		return ErrOverflow
	}
	w.mu.Unlock()
	return nil
}

// trimKeep is the largest buffer Trim keeps: a heartbeat's frame fits.
const trimKeep = 64

// Trim lets the writer's buffers go while nothing is pending and nobody
// writes, keeping one of at most trimKeep bytes: a connection gone idle
// then holds only what its heartbeats need. Call it when the connection
// is known to be idle (before a heartbeat).
func (w *Writer) Trim() {
	w.mu.Lock()
	if !w.writing && len(w.pending) == 0 {
		b := w.pending
		if cap(b) == 0 || (cap(w.spare) > 0 && cap(w.spare) < cap(b)) {
			b = w.spare
		}
		if cap(b) > trimKeep {
			b = nil
		}
		w.pending, w.spare = b[:0], nil
	}
	w.mu.Unlock()
}

// Len returns the number of bytes pending. It takes no lock, so a reader
// can check it per frame; the value may be a moment old.
func (w *Writer) Len() int { return int(w.queued.Load()) }

// Send appends p and starts an asynchronous flush.
func (w *Writer) Send(p []byte) error {
	err := w.Commit(append(w.Begin(), p...))
	w.FlushAsync()
	return err
}

// Flush writes what is pending from the calling goroutine, unless another
// goroutine is writing already (it will write this too): on a TryWriter,
// what the connection takes at once first, then the rest, waiting. It
// returns the writer's error, if any.
func (w *Writer) Flush() error {
	w.mu.Lock()
	if w.writing || w.err != nil || (len(w.pending) == 0 && !w.halfClose) {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.writing = true
	if tw, ok := w.conn.(TryWriter); ok && !w.halfClose && !w.tryDrain(tw) {
		// All written without waiting, or the writer failed.
		w.mu.Lock()
		err := w.err
		w.mu.Unlock()
		return err
	}
	return w.drain()
}

// FlushAsync makes sure what is pending gets written without blocking the
// caller: if nobody is writing, what the connection takes at once is
// written now (on a TryWriter), and a goroutine is started that writes the
// rest until nothing is pending and then exits.
func (w *Writer) FlushAsync() {
	w.mu.Lock()
	if w.writing || w.err != nil || (len(w.pending) == 0 && !w.halfClose) {
		w.mu.Unlock()
		return
	}
	w.writing = true
	if tw, ok := w.conn.(TryWriter); ok && !w.halfClose && !w.tryDrain(tw) {
		return
	}
	go w.drain() //nolint:errcheck // failures go to OnError
}

// FlushNow writes what is pending from the calling goroutine without ever
// waiting, on a TryWriter (on another connection, the writer's goroutine
// writes everything). It returns true when nothing is left to write.
// Otherwise a goroutine of the writer's own writes the rest (or already
// was writing), and resume is called once it is done: everything written,
// or the writer failed. An event loop stops reading a connection whose
// output it could not write, and reads it again on resume.
func (w *Writer) FlushNow(resume func()) bool {
	w.mu.Lock()
	if w.err != nil || (len(w.pending) == 0 && !w.halfClose && !w.writing) {
		w.mu.Unlock()
		return true
	}
	if w.writing {
		w.resume = resume
		w.mu.Unlock()
		return false
	}
	w.writing = true
	if tw, ok := w.conn.(TryWriter); ok && !w.halfClose && !w.tryDrain(tw) {
		return true
	}
	w.resume = resume
	go w.drain() //nolint:errcheck // failures go to OnError
	return false
}

// tryDrain writes with tw until nothing is pending (it then clears
// writing, releases mu and returns false) or the connection takes no more
// (it returns true with mu held and writing set: the rest is for drain).
// A failure also returns false, with mu released. Called with mu held and
// writing set.
func (w *Writer) tryDrain(tw TryWriter) bool {
	for len(w.pending) > 0 {
		buf := w.pending
		w.pending = w.spare[:0]
		w.mu.Unlock()
		n, err := tw.TryWrite(buf)
		w.written.Add(uint64(n))
		w.mu.Lock()
		if err != nil {
			w.fail(err)
			return false
		}
		if n < len(buf) {
			// Put the rest back in front of what was added meanwhile.
			rest := append(buf[:copy(buf, buf[n:])], w.pending...)
			w.spare = w.pending[:0]
			w.pending = rest
			w.queued.Store(int64(len(rest)))
			return true
		}
		// All of it went; what was added meanwhile is next. A large
		// buffer is let go; spare must not stay the array pending now
		// uses, or the next write's rest and the commits made while it
		// is written would share it.
		if cap(buf) <= keepBuf {
			w.spare = buf[:0]
		} else {
			w.spare = nil
		}
		w.queued.Store(int64(len(w.pending)))
	}
	if w.halfClose || w.err != nil {
		return true // drain half-closes, or reports the error
	}
	w.writing = false
	resume := w.resume // a FlushNow that came while this wrote
	w.resume = nil
	w.mu.Unlock()
	if resume != nil {
		resume()
	}
	return false
}

// fail records the writer's first error and reports it. Called with mu
// held and writing set; returns with mu released.
func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
	w.pending = w.pending[:0]
	w.queued.Store(0)
	w.writing = false
	resume := w.resume
	w.resume = nil
	w.mu.Unlock()
	w.notify(err)
	if resume != nil {
		resume()
	}
}

// drain writes until nothing is pending. Called with mu held and writing
// set; returns with mu released.
func (w *Writer) drain() error {
	for w.err == nil && len(w.pending) > 0 {
		buf := w.pending
		w.pending = w.spare[:0]
		w.queued.Store(0)
		w.mu.Unlock()
		err := w.write(buf)
		w.mu.Lock()
		if cap(buf) <= keepBuf {
			w.spare = buf[:0]
		} else {
			w.spare = nil
		}
		if err != nil && w.err == nil {
			w.fail(err)
			return err
		}
	}
	if w.err == nil && w.halfClose {
		w.err = ErrClosed
		if cw, ok := w.conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite() // the peer may be gone already; nothing to do
		}
	}
	if cap(w.pending) > keepBuf {
		w.pending = nil
	}
	err := w.err
	w.writing = false
	resume := w.resume
	w.resume = nil
	w.mu.Unlock()
	if resume != nil {
		resume()
	}
	if err == ErrClosed {
		return nil
	}
	return err
}

func (w *Writer) write(b []byte) error {
	if w.opts.Timeout > 0 {
		// Setting a deadline costs a timer update, so refresh it at most
		// every 1/8 of the timeout: a write may then fail up to 1/8 early.
		now := time.Now()
		if time.Duration(w.deadline-now.UnixNano()) < w.opts.Timeout-w.opts.Timeout/8 {
			d := now.Add(w.opts.Timeout)
			w.deadline = d.UnixNano()
			if err := w.conn.SetWriteDeadline(d); err != nil {
				return err
			}
		}
	}
	n, err := w.conn.Write(b)
	w.written.Add(uint64(n))
	return err
}

// CloseWrite half-closes the connection (TCP FIN) once everything pending is
// written; later data is refused with ErrClosed. It does not block.
func (w *Writer) CloseWrite() {
	w.mu.Lock()
	if w.err != nil || w.halfClose {
		w.mu.Unlock()
		return
	}
	w.halfClose = true
	if w.writing {
		w.mu.Unlock()
		return
	}
	w.writing = true
	go w.drain() //nolint:errcheck // failures go to OnError
}

// Close drops what is pending and refuses further data. It does not close
// the connection.
func (w *Writer) Close() {
	w.mu.Lock()
	if w.err == nil {
		w.err = ErrClosed
	}
	w.pending = nil
	w.spare = nil
	w.queued.Store(0)
	w.mu.Unlock()
}

func (w *Writer) notify(err error) {
	if w.opts.OnError != nil {
		w.opts.OnError(err)
	}
}

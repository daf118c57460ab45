package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexo-project/nexo/wire"
)

// ReconnectOptions configure a Reconnecting client. The zero value means
// the defaults.
type ReconnectOptions struct {
	// MinBackoff and MaxBackoff bound the wait before the n-th attempt to
	// dial or retry: a random duration in [0, min(MaxBackoff,
	// MinBackoff·2ⁿ)) ("full jitter", so that many clients do not come back
	// in step). Defaults 50ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// Idempotent reports whether a method may run twice without harm, so
	// that a call lost with its connection can be sent again. Default:
	// DefaultIdempotent.
	Idempotent func(method string) bool
}

// DefaultIdempotent is true for the math methods and the read-only sys
// methods (echo, info, stats, clients).
func DefaultIdempotent(method string) bool {
	switch method {
	case "sys.echo", "sys.info", "sys.stats", "sys.clients":
		return true
	}
	return strings.HasPrefix(method, "math.")
}

// Reconnecting is a client that outlives its connections: when the server
// goes away (restart, network failure, shutdown) it dials again with
// backoff, and calls go on.
//
// What happens to a call whose connection fails is always visible:
//   - answered BUSY or SHUTTING_DOWN: the server did not run it, so it is
//     sent again, whatever the method;
//   - lost with the connection (ErrClosed, ErrServerDead): it may or may
//     not have run; an idempotent method is sent again, any other returns
//     the error, so the caller decides;
//   - any other error is the method's answer and is returned.
//
// Retries go on until the call's context ends. Use it from many goroutines.
type Reconnecting struct {
	addr string
	opts Options
	ro   ReconnectOptions

	dialMu     sync.Mutex // one dial at a time
	mu         sync.Mutex
	cur        *Client // guarded by mu
	closed     bool    // guarded by mu
	reconnects atomic.Uint64
	retries    atomic.Uint64
}

// DialReconnecting dials addr like Dial and returns a Reconnecting client.
// The first dial is retried with backoff until ctx ends.
func DialReconnecting(ctx context.Context, addr string, opts *Options, ro *ReconnectOptions) (*Reconnecting, error) {
	r := &Reconnecting{addr: addr}
	if opts != nil {
		r.opts = *opts
	}
	if ro != nil {
		r.ro = *ro
	}
	if r.ro.MinBackoff <= 0 {
		r.ro.MinBackoff = 50 * time.Millisecond
	}
	if r.ro.MaxBackoff <= 0 {
		r.ro.MaxBackoff = 5 * time.Second
	}
	if r.ro.Idempotent == nil {
		r.ro.Idempotent = DefaultIdempotent
	}
	if _, err := r.client(ctx); err != nil {
		return nil, err
	}
	r.reconnects.Store(0)
	return r, nil
}

// Reconnects returns how many times a new connection replaced a lost one.
func (r *Reconnecting) Reconnects() uint64 { return r.reconnects.Load() }

// Retries returns how many calls were sent again.
func (r *Reconnecting) Retries() uint64 { return r.retries.Load() }

// client returns a usable connection, dialling one if needed.
func (r *Reconnecting) client(ctx context.Context) (*Client, error) {
	if c, err := r.current(); c != nil || err != nil {
		return c, err
	}
	r.dialMu.Lock()
	defer r.dialMu.Unlock()
	for attempt := 0; ; attempt++ {
		if c, err := r.current(); c != nil || err != nil {
			return c, err // another goroutine dialled, or Close was called
		}
		c, err := Dial(ctx, r.addr, &r.opts)
		if err == nil {
			r.mu.Lock()
			if r.closed {
				// Close ran during the dial and closed only the
				// connection it saw: this one is ours to close, or it
				// would stay open with nobody to close it.
				r.mu.Unlock()
				_ = c.Close()
				return nil, ErrClosed
			}
			old := r.cur
			r.cur = c
			r.mu.Unlock()
			if old != nil {
				r.reconnects.Add(1)
				go old.Close() // it may still be draining its answers
			}
			return c, nil
		}
		if werr, ok := errors.AsType[*wire.Error](err); ok && werr.Code == wire.CodeUnauthorized {
			return nil, err // retrying cannot help
		}
		if serr := r.sleep(ctx, attempt); serr != nil {
			return nil, err // the last dial error says more than ctx's
		}
	}
}

// current returns the current connection if it is usable; an error once
// Close was called.
func (r *Reconnecting) current() (*Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if r.cur != nil && r.cur.Usable() == nil {
		return r.cur, nil
	}
	return nil, nil
}

// sleep waits the full-jitter backoff of the attempt, or until ctx ends.
func (r *Reconnecting) sleep(ctx context.Context, attempt int) error {
	ceiling := r.ro.MaxBackoff
	if attempt < 30 {
		ceiling = min(ceiling, r.ro.MinBackoff<<attempt)
	}
	t := time.NewTimer(rand.N(ceiling) + 1)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Call sends a request, on whichever connection is up, and returns its
// response payload; see Reconnecting for what is retried.
func (r *Reconnecting) Call(ctx context.Context, method string, payload []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		c, err := r.client(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := c.Call(ctx, method, payload)
		if err == nil || !r.retryable(method, err) || ctx.Err() != nil {
			return resp, err
		}
		r.retries.Add(1)
		if err := r.sleep(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

func (r *Reconnecting) retryable(method string, err error) bool {
	if errors.Is(err, wire.CodeBusy) || errors.Is(err, wire.CodeShuttingDown) {
		return true // not run by the server
	}
	return (errors.Is(err, ErrClosed) || errors.Is(err, ErrServerDead)) && r.ro.Idempotent(method)
}

// Add returns a + b (math.add), retried across reconnections.
func (r *Reconnecting) Add(ctx context.Context, a, b int64) (int64, error) {
	p := operands(a, b)
	resp, err := r.Call(ctx, "math.add", p[:])
	if err != nil {
		return 0, err
	}
	if len(resp) != 8 {
		return 0, fmt.Errorf("client: math.add answered %d bytes, want 8", len(resp))
	}
	return int64(binary.BigEndian.Uint64(resp)), nil
}

// Close closes the current connection (with GOODBYE); later calls fail
// with ErrClosed. A connection being dialled when Close is called is
// closed as soon as its dial completes.
func (r *Reconnecting) Close() error {
	r.mu.Lock()
	c := r.cur
	r.closed = true
	r.mu.Unlock()
	if c != nil {
		return c.Close()
	}
	return nil
}

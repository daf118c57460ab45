package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nexo-project/nexo/wire"
)

func echo(_ context.Context, req Request, dst []byte) ([]byte, error) {
	return append(dst, req.Payload...), nil
}

func TestRegister(t *testing.T) {
	r := NewRegistry()
	if err := r.Register(Method{Name: "a.one", Handler: echo}, Method{Name: "a.secret", Handler: echo, Hidden: true}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		methods []Method
		want    string
	}{
		{"duplicate", []Method{{Name: "a.one", Handler: echo}}, "already registered"},
		{"twice in one call", []Method{{Name: "b.x", Handler: echo}, {Name: "b.x", Handler: echo}}, "listed twice"},
		{"empty name", []Method{{Name: "", Handler: echo}}, "1 to 255"},
		{"space", []Method{{Name: "a b", Handler: echo}}, "printable ASCII"},
		{"too long", []Method{{Name: strings.Repeat("m", 256), Handler: echo}}, "1 to 255"},
		{"no handler", []Method{{Name: "c.x"}}, "exactly one of Handler and Async"},
		{"both handlers", []Method{{Name: "c.x", Handler: echo, Async: later(0)}}, "exactly one of Handler and Async"},
	}
	for _, tt := range tests {
		if err := r.Register(tt.methods...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	// A failed call registers nothing of itself.
	if r.Get("b.x") != nil {
		t.Error("a failed Register left a method behind")
	}
	if got := strings.Join(r.Names(false), ","); got != "a.one" {
		t.Errorf("Names(false) = %s", got)
	}
	if got := strings.Join(r.Names(true), ","); got != "a.one,a.secret" {
		t.Errorf("Names(true) = %s", got)
	}
	name := []byte("a.one")
	if allocs := testing.AllocsPerRun(100, func() { _ = r.Lookup(name) }); allocs != 0 {
		t.Errorf("Lookup allocates %v times", allocs)
	}
	if r.Lookup([]byte("nope")) != nil || r.Lookup(name).Name != "a.one" {
		t.Error("Lookup")
	}
	if (*Caller)(nil).Trusted() || (&Caller{}).Trusted() || (&Caller{Loopback: true}).Trusted() || !(&Caller{Admin: true}).Trusted() {
		t.Error("Trusted")
	}
}

// later is an AsyncHandler that answers the payload upper-cased after d,
// from another goroutine, reusing its buffer at once as a NATS client would.
func later(d time.Duration) AsyncHandler {
	return func(req Request, _ time.Time, done func([]byte, error) Flusher) {
		b := []byte(strings.ToUpper(string(req.Payload)))
		time.AfterFunc(d, func() {
			done(b, nil)
			copy(b, "XXXXX") // done must not keep the payload
		})
	}
}

func TestAsyncCall(t *testing.T) {
	m := Method{Name: "a.async", Async: later(time.Millisecond)}
	out, err := m.Call(context.Background(), Request{Payload: []byte("hello")}, []byte("> "))
	if err != nil || string(out) != "> HELLO" {
		t.Fatalf("Call = %q, %v; want \"> HELLO\"", out, err)
	}
	slow := Method{Name: "a.slow", Async: later(time.Hour)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := slow.Call(ctx, Request{}, nil); !errors.Is(err, context.DeadlineExceeded) || CodeOf(err) != wire.CodeTimeout {
		t.Fatalf("Call past the deadline = %v (code %v), want DeadlineExceeded (TIMEOUT)", err, CodeOf(err))
	}
	var gotDeadline time.Time
	probe := Method{Name: "a.probe", Async: func(_ Request, d time.Time, done func([]byte, error) Flusher) {
		gotDeadline = d
		done(nil, nil)
	}}
	before := time.Now()
	if _, err := probe.Call(context.Background(), Request{}, nil); err != nil {
		t.Fatal(err)
	}
	if d := gotDeadline.Sub(before); d < DefaultTimeout || d > DefaultTimeout+time.Second {
		t.Errorf("without a context deadline the handler got %v, want DefaultTimeout", d)
	}

	r := NewRegistry()
	if err := r.SetFallback(Method{Name: "any", Handler: echo}); err == nil {
		t.Error("SetFallback took a synchronous handler")
	}
	if r.Fallback() != nil {
		t.Error("Fallback set by a failed SetFallback")
	}
	if err := r.SetFallback(m); err != nil || r.Fallback().Name != "a.async" || r.Lookup([]byte("a.async")) != nil {
		t.Errorf("SetFallback: %v; the fallback must not be registered under its name", err)
	}
}

// TestDescribeWhileChanging: methods may come and go while the registry is
// described (an upstream's new document): Describe never sees a name
// without its method.
func TestDescribeWhileChanging(t *testing.T) {
	reg := NewRegistry()
	h := func(context.Context, Request, []byte) ([]byte, error) { return nil, nil }
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("up.m%d", i%8)
			if reg.Lookup([]byte(name)) != nil {
				_ = reg.Replace([]string{name})
			} else {
				_ = reg.Register(Method{Name: name, Handler: h})
			}
		}
	}()
	for range 50000 {
		for _, d := range reg.Describe(true) {
			if d.Name == "" {
				t.Fatal("a method without a name")
			}
		}
	}
	close(stop)
	<-done
}

// TestLookupCached: a reader's cached lookup answers what Lookup would,
// also once the registry has changed: a method replaced is the new one,
// a method removed is gone, another name is looked up.
func TestLookupCached(t *testing.T) {
	reg := NewRegistry()
	h := func(_ context.Context, _ Request, dst []byte) ([]byte, error) { return dst, nil }
	if err := reg.Register(Method{Name: "a.one", Handler: h}, Method{Name: "a.two", Handler: h}); err != nil {
		t.Fatal(err)
	}
	var c LookupCache
	one := reg.LookupCached([]byte("a.one"), &c)
	if one == nil || one != reg.Lookup([]byte("a.one")) || reg.LookupCached([]byte("a.one"), &c) != one {
		t.Fatalf("a.one: %v", one)
	}
	if two := reg.LookupCached([]byte("a.two"), &c); two == nil || two.Name != "a.two" {
		t.Fatalf("a.two after a.one: %v", two)
	}
	if err := reg.Replace([]string{"a.two"}, Method{Name: "a.two", Handler: h, Inline: true}); err != nil {
		t.Fatal(err)
	}
	if two := reg.LookupCached([]byte("a.two"), &c); two == nil || !two.Inline {
		t.Fatalf("a.two replaced: %+v, want the new one", two)
	}
	if err := reg.Replace([]string{"a.two"}); err != nil {
		t.Fatal(err)
	}
	if two := reg.LookupCached([]byte("a.two"), &c); two != nil {
		t.Fatalf("a.two removed: %+v, want nil", two)
	}
	if none := reg.LookupCached([]byte("a.three"), &c); none != nil {
		t.Fatalf("a.three: %+v", none)
	}
	if n := testing.AllocsPerRun(100, func() { reg.LookupCached([]byte("a.one"), &c) }); n != 0 {
		t.Errorf("%v allocations per cached lookup", n)
	}
}

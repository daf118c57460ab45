package catalog

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nexo-project/nexo/internal/service"
	"github.com/nexo-project/nexo/internal/status"
)

type source struct{}

func (source) ClientCount() int                   { return 0 }
func (source) Clients() status.Snapshot           { return status.Snapshot{} }
func (source) Stats() status.Stats                { return status.Stats{} }
func (source) History() []status.Sample           { return nil }
func (source) Subscribe(uint64, []string) error   { return nil }
func (source) Kick(id uint64, reason string) bool { return false }

// stubs forwards by replacing the handler with an async one that marks it.
type stubs struct{}

func (stubs) Stub(m service.Method) service.Method {
	m.Handler, m.Inline = nil, false
	m.Async = func(service.Request, time.Time, func([]byte, error) service.Flusher) {}
	return m
}

func (stubs) Fallback() service.Method {
	return service.Method{Name: "forward", Async: func(service.Request, time.Time, func([]byte, error) service.Flusher) {}}
}

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{"all", []string{"math", "sys"}, true},
		{"none", nil, true},
		{" math ", []string{"math"}, true},
		{"sys,math", []string{"math", "sys"}, true},
		{"math,calc", nil, false},
	} {
		sel, err := Parse(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		var got []string
		for n := range sel {
			got = append(got, n)
		}
		slices.Sort(got)
		if tt.ok && !slices.Equal(got, tt.want) {
			t.Errorf("Parse(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestRegister checks what each kind of process serves: a server with
// everything, a worker with its selection only, and a gateway with stubs
// for what workers serve plus the fallback and sys.cluster.
func TestRegister(t *testing.T) {
	cluster := func(context.Context) (any, error) { return nil, nil }
	for _, tt := range []struct {
		name      string
		opts      Options
		local     []string // served here
		forwarded []string // stubs
		absent    []string
		fallback  bool
	}{
		{"server", Options{Server: source{}, Version: "1"},
			[]string{"math.add", "sys.echo", "sys.info", "sys.clients", "sys.subscribe", "sys.stats", "sys.kick"}, nil, []string{"sys.cluster"}, false},
		{"worker", Options{Select: map[string]bool{"math": true}},
			[]string{"math.add", "math.div"}, nil, []string{"sys.echo", "sys.info"}, false},
		{"gateway", Options{Select: map[string]bool{"sys": true}, Server: source{}, Gateway: stubs{}, Cluster: cluster},
			[]string{"sys.echo", "sys.info", "sys.cluster"}, []string{"math.add", "math.mul"}, nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := service.NewRegistry()
			if err := Register(reg, tt.opts); err != nil {
				t.Fatal(err)
			}
			for _, n := range tt.local {
				if m := reg.Get(n); m == nil || m.Handler == nil {
					t.Errorf("%s: not served here", n)
				}
			}
			for _, n := range tt.forwarded {
				if m := reg.Get(n); m == nil || m.Async == nil {
					t.Errorf("%s: not forwarded", n)
				}
			}
			for _, n := range tt.absent {
				if reg.Get(n) != nil {
					t.Errorf("%s: registered", n)
				}
			}
			if (reg.Fallback() != nil) != tt.fallback {
				t.Errorf("fallback: %v", reg.Fallback())
			}
		})
	}
	// Registering twice is an error, not a silent overwrite.
	reg := service.NewRegistry()
	if err := Register(reg, Options{}); err != nil {
		t.Fatal(err)
	}
	if err := Register(reg, Options{}); err == nil {
		t.Error("second Register succeeded")
	}
}

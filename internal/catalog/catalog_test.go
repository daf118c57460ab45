package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/nexo-project/nexo/internal/status"
	"github.com/nexo-project/nexo/service"
	jsonschema "github.com/santhosh-tekuri/jsonschema/v6"
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

// Remote knows one JSON method of the cluster.
func (stubs) Remote() service.Remote { return remote{} }

type remote struct{}

func (remote) Describe() []service.Described {
	return []service.Described{{Name: "far.away", Encoding: "json", Errors: []string{}}}
}

func (remote) Method(name string) *service.Method {
	if name != "far.away" {
		return nil
	}
	return &service.Method{Name: name, JSON: service.PassJSON}
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

// TestDescriptions: every method nexo ships is described, its params and
// result schemas compile, and each example is true: it is run through the
// method's JSON codec and handler, its params fit the params schema, its
// result is what the method gives and fits the result schema, and an
// example error is the error the method returns and one it lists.
func TestDescriptions(t *testing.T) {
	reg := service.NewRegistry()
	cluster := func(context.Context) (any, error) { return map[string]any{}, nil }
	if err := Register(reg, Options{Server: source{}, Version: "1", Cluster: cluster}); err != nil {
		t.Fatal(err)
	}
	compile := func(name, what string, s json.RawMessage) *jsonschema.Schema {
		t.Helper()
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(s))
		c := jsonschema.NewCompiler()
		if err == nil {
			err = c.AddResource(what+".json", doc)
		}
		var out *jsonschema.Schema
		if err == nil {
			out, err = c.Compile(what + ".json")
		}
		if err != nil {
			t.Fatalf("%s: %s schema %s: %v", name, what, s, err)
		}
		return out
	}
	fits := func(s *jsonschema.Schema, v json.RawMessage) error {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(v))
		if err != nil {
			return err
		}
		return s.Validate(doc)
	}
	examples := 0
	for _, d := range reg.Describe(true) {
		m := reg.Get(d.Name)
		if d.Summary == "" || len(d.Params) == 0 || len(d.Result) == 0 || m.JSON == nil {
			t.Errorf("%s is not described on every door: %+v", d.Name, d)
			continue
		}
		params, result := compile(d.Name, "params", d.Params), compile(d.Name, "result", d.Result)
		for _, ex := range d.Examples {
			examples++
			if err := fits(params, ex.Params); err != nil {
				t.Errorf("%s example %s: params do not fit the schema: %v", d.Name, ex.Params, err)
			}
			payload, err := m.JSON.Params(ex.Params, nil)
			var out []byte
			if err == nil {
				out, err = m.Call(context.Background(), service.Request{Payload: payload, Caller: &service.Caller{Admin: true}}, nil)
			}
			if ex.Error != "" {
				if got := service.CodeOf(err).String(); got != ex.Error || !slices.Contains(d.Errors, ex.Error) {
					t.Errorf("%s example %s: got %v (%s), want %s, listed in %v", d.Name, ex.Params, err, got, ex.Error, d.Errors)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s example %s: %v", d.Name, ex.Params, err)
				continue
			}
			got, err := m.JSON.Result(out, nil)
			if err != nil || string(got) != string(ex.Result) {
				t.Errorf("%s example %s: result %s %v, want %s", d.Name, ex.Params, got, err, ex.Result)
			}
			if err := fits(result, got); err != nil {
				t.Errorf("%s example %s: result %s does not fit the schema: %v", d.Name, ex.Params, got, err)
			}
		}
	}
	if examples < 10 {
		t.Errorf("only %d examples", examples)
	}
}

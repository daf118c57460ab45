package sys

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// monitorSource is a Source that is a Monitor, recording its calls.
type monitorSource struct {
	fakeSource
	calls []MonitorParams
	ids   []uint64
}

func (m *monitorSource) Monitor(id, client uint64, method string, frames bool) error {
	m.ids = append(m.ids, id)
	m.calls = append(m.calls, MonitorParams{client, method, frames})
	return nil
}

func (m *monitorSource) Unmonitor(id uint64) bool { return slices.Contains(m.ids, id) }

// TestMonitorMethods: sys.monitor and sys.unmonitor exist only for a
// Source that can stream; they are hidden and refuse non-admins before
// looking at their params, as sys.kick does; sys.monitor takes an object
// of optional members, checked, and answers the filter; sys.describe
// describes both with schemas.
func TestMonitorMethods(t *testing.T) {
	plain := service.NewRegistry()
	if err := plain.Register(ServerMethods(fakeSource{}, plain, "1")...); err != nil {
		t.Fatal(err)
	}
	if plain.Get("sys.monitor") != nil || plain.Get("sys.unmonitor") != nil {
		t.Error("a Source that cannot stream has sys.monitor")
	}

	src := &monitorSource{}
	reg := service.NewRegistry()
	if err := reg.Register(ServerMethods(src, reg, "1")...); err != nil {
		t.Fatal(err)
	}
	call := func(method string, caller service.Caller, params string) ([]byte, error) {
		m := reg.Get(method)
		if m == nil {
			t.Fatalf("no %s", method)
		}
		return m.Call(context.Background(), service.Request{Payload: []byte(params), Caller: &caller}, nil)
	}
	nobody := service.Caller{ID: 4, Loopback: true}
	for _, tt := range []struct{ method, params string }{
		{"sys.monitor", `{}`}, {"sys.monitor", `{"client":"x"}`}, {"sys.unmonitor", ``}, {"sys.kick", `[1]`},
	} {
		if _, err := call(tt.method, nobody, tt.params); !errors.Is(err, service.ErrNotPermitted) || service.CodeOf(err) != wire.CodeUnknownMethod {
			t.Errorf("%s %s by a non-admin: %v, want UNKNOWN_METHOD", tt.method, tt.params, err)
		}
	}
	if len(src.calls) != 0 {
		t.Fatalf("a non-admin reached the source: %v", src.calls)
	}

	admin := service.Caller{ID: 7, Admin: true}
	for _, tt := range []struct {
		params, want string
		filter       MonitorParams
	}{
		{``, `{}`, MonitorParams{}},
		{`{}`, `{}`, MonitorParams{}},
		{`{"client":3,"method":"math.add","frames":true}`, `{"client":3,"method":"math.add","frames":true}`, MonitorParams{3, "math.add", true}},
	} {
		src.calls = nil
		out, err := call("sys.monitor", admin, tt.params)
		if err != nil || string(out) != tt.want || len(src.calls) != 1 || src.calls[0] != tt.filter || src.ids[len(src.ids)-1] != 7 {
			t.Errorf("sys.monitor %s: %s %v, calls %v; want %s", tt.params, out, err, src.calls, tt.want)
		}
	}
	for _, params := range []string{`{"client":0}`, `{"client":-1}`, `{"method":""}`, `{"frames":1}`, `{"other":1}`, `[3]`, `null`} {
		if _, err := call("sys.monitor", admin, params); service.CodeOf(err) != wire.CodeBadPayload {
			t.Errorf("sys.monitor %s: %v, want BAD_PAYLOAD", params, err)
		}
	}
	if out, err := call("sys.unmonitor", admin, ``); err != nil || string(out) != "true" {
		t.Errorf("sys.unmonitor: %s %v", out, err)
	}

	described := 0
	for _, d := range reg.Describe(true) {
		if d.Name != "sys.monitor" && d.Name != "sys.unmonitor" {
			continue
		}
		described++
		var params, result map[string]any
		if json.Unmarshal(d.Params, &params) != nil || json.Unmarshal(d.Result, &result) != nil || d.Summary == "" ||
			!slices.Contains(d.Errors, "UNKNOWN_METHOD") || len(d.Examples) == 0 || d.Encoding != "json" {
			t.Errorf("%s is not described: %+v\nparams %s\nresult %s", d.Name, d, d.Params, d.Result)
		}
		if d.Name == "sys.monitor" {
			props, _ := params["properties"].(map[string]any)
			if params["type"] != "object" || props["client"] == nil || props["method"] == nil || props["frames"] == nil || params["required"] != nil {
				t.Errorf("sys.monitor's params schema: %s", d.Params)
			}
		}
	}
	if described != 2 {
		t.Errorf("sys.describe describes %d of sys.monitor and sys.unmonitor, want both", described)
	}
	if slices.Contains(reg.Names(false), "sys.monitor") || !slices.Contains(reg.Names(true), "sys.monitor") {
		t.Error("sys.monitor is listed to everyone, or to no one")
	}
}

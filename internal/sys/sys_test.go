package sys

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"testing"

	"github.com/nexo-project/nexo/internal/status"
	"github.com/nexo-project/nexo/service"
)

type fakeSource struct{}

func (fakeSource) ClientCount() int { return 3 }
func (fakeSource) Clients() status.Snapshot {
	return status.Snapshot{Clients: make([]status.ClientInfo, 3)}
}
func (fakeSource) Stats() status.Stats                { return status.Stats{Clients: 3} }
func (fakeSource) History() []status.Sample           { return nil }
func (fakeSource) Subscribe(uint64, []string) error   { return nil }
func (fakeSource) Kick(id uint64, reason string) bool { return id == 3 }

// TestPrivilege: sys.clients answers only loopback or admin callers, and
// sys.info lists it only to them.
func TestPrivilege(t *testing.T) {
	reg := service.NewRegistry()
	if err := reg.Register(append(Methods(), ServerMethods(fakeSource{}, reg, "9.9")...)...); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		caller  service.Caller
		allowed bool
	}{
		{"remote", service.Caller{Remote: "192.0.2.1:5000"}, false},
		{"loopback without admin", service.Caller{Loopback: true}, false},
		{"admin", service.Caller{Admin: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := service.Request{Caller: &tt.caller}
			out, err := reg.Get("sys.clients").Handler(context.Background(), req, nil)
			if tt.allowed != (err == nil) || (!tt.allowed && !errors.Is(err, service.ErrNotPermitted)) {
				t.Fatalf("sys.clients: %s, %v", out, err)
			}
			out, err = reg.Get("sys.info").Handler(context.Background(), req, nil)
			var info Info
			if err != nil || json.Unmarshal(out, &info) != nil {
				t.Fatalf("sys.info: %s, %v", out, err)
			}
			listed := false
			for _, m := range info.Methods {
				listed = listed || m == "sys.clients"
			}
			if listed != tt.allowed || info.Clients != 3 || info.Server != "nexo/9.9" {
				t.Errorf("sys.info = %+v", info)
			}
			// In milliseconds, as /api/stats says it: not 24.066994916.
			if ms := info.UptimeS * 1000; math.Abs(ms-math.Round(ms)) > 1e-6 {
				t.Errorf("sys.info uptime_s %v is not whole milliseconds", info.UptimeS)
			}
		})
	}
}

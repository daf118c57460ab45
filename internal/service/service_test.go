package service

import (
	"context"
	"strings"
	"testing"
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
		{"nil handler", []Method{{Name: "c.x"}}, "nil handler"},
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

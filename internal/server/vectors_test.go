package server_test

import (
	"encoding/hex"
	"testing"

	. "github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/internal/vectors"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMethodVectors sends every shared method vector to a live server,
// pipelined on one connection, and checks each answer byte for byte.
func TestMethodVectors(t *testing.T) {
	srv := Start(t, server.Config{})
	CheckMethodVectors(t, srv.Native)
}

// TestLegacyVectors sends every shared legacy vector to a live legacy door:
// the valid ones of each byte order on one connection, each invalid one on
// its own, which the server must then close.
func TestLegacyVectors(t *testing.T) {
	type vector struct {
		Name   string `json:"name"`
		Hex    string `json:"hex"`
		Valid  bool   `json:"valid"`
		Order  string `json:"order"`
		Reply  string `json:"reply"`
		Closes bool   `json:"closes"`
	}
	srv := Start(t, server.Config{})
	conns := map[string]*Conn{} // one per byte order, for the whole test
	for _, v := range vectors.Load[vector](t, "legacy.json") {
		c := conns[v.Order]
		if !v.Valid {
			c = Dial(t, srv.Legacy)
		} else if c == nil {
			c = Dial(t, srv.Legacy)
			conns[v.Order] = c
		}
		if got := c.LegacyLine(unhex(t, v.Hex)); got != v.Reply {
			t.Errorf("%s: got %q, want %q", v.Name, got, v.Reply)
		}
		if v.Closes {
			c.ExpectClosed()
		}
	}
}

package server_test

import (
	"encoding/hex"
	"testing"

	. "github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/internal/vectors"
	"github.com/nexo-project/nexo/wire"
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
	type vector struct {
		Method      string  `json:"method"`
		PayloadHex  string  `json:"payload_hex"`
		ResponseHex *string `json:"response_hex"`
		Error       string  `json:"error"`
	}
	vs := vectors.Load[vector](t, "methods.json")
	srv := Start(t, server.Config{})
	c, _ := Hello(t, srv.Native, "vectors")
	var burst []byte
	for i, v := range vs {
		burst = wire.AppendRequest(burst, uint32(i+1), v.Method, unhex(t, v.PayloadHex))
	}
	c.Send(burst)
	got := map[uint32]wire.Frame{}
	for range vs {
		f := c.Read()
		f.Body = append([]byte(nil), f.Body...)
		got[f.ID] = f
	}
	for i, v := range vs {
		f := got[uint32(i+1)]
		if v.ResponseHex != nil {
			if f.Type != wire.TypeResponse || hex.EncodeToString(f.Body) != *v.ResponseHex {
				t.Errorf("%s %s: got %s, want RESPONSE %s", v.Method, v.PayloadHex, String(f), *v.ResponseHex)
			}
			continue
		}
		we, err := wire.ParseError(f.Body)
		if f.Type != wire.TypeError || err != nil || we.Code.String() != v.Error {
			t.Errorf("%s %s: got %s, want ERROR %s", v.Method, v.PayloadHex, String(f), v.Error)
		}
	}
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

package nexotest

import (
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/nexo-project/nexo/internal/vectors"
	"github.com/nexo-project/nexo/wire"
)

// methodVector is one case of testdata/vectors/methods.json.
type methodVector struct {
	Method      string          `json:"method"`
	PayloadHex  string          `json:"payload_hex"`
	ResponseHex *string         `json:"response_hex"`
	Error       string          `json:"error"`
	A           json.RawMessage `json:"a"`
	B           json.RawMessage `json:"b"`
	Result      json.RawMessage `json:"result"`
}

// CheckMethodVectors sends every method vector to the native door at
// addr, pipelined on one connection, and checks each answer byte for byte.
func CheckMethodVectors(t testing.TB, addr string) {
	t.Helper()
	vs := vectors.Load[methodVector](t, "methods.json")
	c, _ := Hello(t, addr, "vectors")
	var burst []byte
	for i, v := range vs {
		p, err := hex.DecodeString(v.PayloadHex)
		if err != nil {
			t.Fatal(err)
		}
		burst = wire.AppendRequest(burst, uint32(i+1), v.Method, p)
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
		if we, err := wire.ParseError(f.Body); f.Type != wire.TypeError || err != nil || we.Code.String() != v.Error {
			t.Errorf("%s %s: got %s, want ERROR %s", v.Method, v.PayloadHex, String(f), v.Error)
		}
	}
}

// JSONCall calls a method over a JSON door with params in JSON, and
// returns its result, or the name of its error (data.name).
type JSONCall func(method, params string) (result json.RawMessage, errName string)

// CheckJSONVectors calls every math vector of methods.json with params
// [a, b] through call, and checks the answer: the same integer exactly,
// the same float64 for a quotient, or the same error. Each door answers
// them as the native door does.
func CheckJSONVectors(t testing.TB, door string, call JSONCall) {
	t.Helper()
	n := 0
	for _, v := range vectors.Load[methodVector](t, "methods.json") {
		if !strings.HasPrefix(v.Method, "math.") || v.A == nil {
			continue // binary-only cases: short payloads have no JSON form
		}
		n++
		params := "[" + string(v.A) + "," + string(v.B) + "]"
		result, errName := call(v.Method, params)
		switch {
		case v.Error != "":
			if errName != v.Error {
				t.Errorf("%s %s %s: %s %s, want %s", door, v.Method, params, result, errName, v.Error)
			}
		case errName != "":
			t.Errorf("%s %s %s: %s, want %s", door, v.Method, params, errName, v.Result)
		case v.Method == "math.div":
			got, err1 := strconv.ParseFloat(string(result), 64)
			want, err2 := strconv.ParseFloat(string(v.Result), 64)
			if err1 != nil || err2 != nil || got != want {
				t.Errorf("%s %s %s: %s, want %s", door, v.Method, params, result, v.Result)
			}
		case string(result) != string(v.Result):
			t.Errorf("%s %s %s: %s, want exactly %s", door, v.Method, params, result, v.Result)
		}
	}
	if n < 15 {
		t.Errorf("only %d math vectors with operands", n)
	}
}

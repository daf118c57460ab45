package jsonrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/nexo-project/nexo/service"
)

// fastSeeds are calls in the forms clients send (the first six, which
// the fast path takes), and near misses of them.
var fastSeeds = []string{
	`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`,
	` { "id" : "a\u00e9" , "method" : "sys.echo" , "params" : { "x" : [ 1.5e3 , -0 , true , null , "\"" ] } , "jsonrpc" : "2.0" } `,
	`{"jsonrpc":"2.0","method":"x","id":null}`,
	`{"jsonrpc":"2.0","method":"x"}`,
	`{"jsonrpc":"2.0","method":"x","method":"y","id":1,"id":2}`,
	`{"jsonrpc":"2.0","method":"x","params":[[[[[[[[]]]]]]]],"id":-1.0e+2}`,
	`{"jsonrpc":"2.0","Method":"x","id":1}`,
	`{"jsonrpc":"2.0","method":"x","params":null,"id":1}`,
	`{"jsonrpc":"2.0","method":"x","params":[01],"id":1}`,
	`{"jsonrpc":"2.0","method":"x","id":1,}`,
	`{"jsonrpc":"2.0","method":"x","id":1}}`,
	`{"jsonrpc":"2.0","method":"\u0078","id":1}`,
	`{"jsonrpc":"2.0","method":"x","id":[1]}`,
	`{"jsonrpc":"1.0","method":"x","id":1}`,
	`{"jsonrpc":"2.0","method":"x","params":["\ud800", "\x"],"id":1}`,
	"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\",\"id\":1}",
}

// FuzzFastCall holds the fast path to encoding/json: a message it takes
// is valid JSON that encoding/json decodes to the same call, and an
// answer it writes is encoding/json's byte for byte.
func FuzzFastCall(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s), []byte(`[1,"<b>",{"a":null}]`))
	}
	f.Add([]byte(`{"jsonrpc":"2.0","method":"x","id":"a b"}`), []byte(`3`))
	f.Add([]byte(`{"jsonrpc":"2.0","method":"x","id":7}`), []byte(`{"a": 1}`))
	f.Add([]byte(`{"jsonrpc":"2.0","method":"x","id":7}`), []byte(`[1,]`))
	f.Fuzz(func(t *testing.T, msg, result []byte) {
		msg = bytes.TrimSpace(msg)
		if req, ok := parseFast(msg); ok {
			e, err := parseEnvelope(msg)
			if err != nil {
				t.Fatalf("the fast path took %q, which encoding/json refuses: %v", msg, err)
			}
			switch {
			case e.JSONRPC == nil || *e.JSONRPC != "2.0":
				t.Fatalf("the fast path took %q without jsonrpc 2.0", msg)
			case e.Method == nil || *e.Method != req.Method:
				t.Fatalf("%q: method %q, encoding/json %v", msg, req.Method, e.Method)
			case !bytes.Equal(e.Params, req.Params) || (e.Params == nil) != (req.Params == nil):
				t.Fatalf("%q: params %q, encoding/json %q", msg, req.Params, e.Params)
			case !bytes.Equal(e.ID, req.ID) || (e.ID == nil) != (req.ID == nil):
				t.Fatalf("%q: id %q, encoding/json %q", msg, req.ID, e.ID)
			}
			if req.ID != nil {
				resp := response{JSONRPC: "2.0", Result: result, ID: req.ID}
				want, err := json.Marshal(resp)
				got, ok := appendResult(nil, result, req.ID)
				switch {
				case ok && err != nil:
					t.Fatalf("answer with result %q written, which encoding/json refuses: %v", result, err)
				case ok && !bytes.Equal(got, want):
					t.Fatalf("answer %s, encoding/json %s", got, want)
				}
			}
		}
	})
}

// TestFastTakesCommonCalls: the fast path takes the calls clients send,
// including the ones with space around every token, and leaves the rest.
func TestFastTakesCommonCalls(t *testing.T) {
	for i, s := range fastSeeds {
		_, ok := parseFast(bytes.TrimSpace([]byte(s)))
		if want := i < 6; ok != want {
			t.Errorf("parseFast(%s) took it: %v, want %v", s, ok, want)
		}
	}
	if b, ok := appendResult(nil, []byte(`3`), []byte(`1`)); !ok || string(b) != `{"jsonrpc":"2.0","result":3,"id":1}` {
		t.Errorf("appendResult = %s, %v", b, ok)
	}
}

// TestParseErrorStillParseError: a message that is not JSON is a parse
// error (-32700), and one that is JSON but not a call an invalid request
// (-32600), now that the single-call path no longer runs json.Valid
// first.
func TestParseErrorStillParseError(t *testing.T) {
	for msg, code := range map[string]int{`{"jsonrpc":"2.0","method":"x","id":1`: codeParseError, `{"jsonrpc":2}`: codeInvalidRequest, `"x"`: codeInvalidRequest} {
		_, resp, ok := parseCall([]byte(msg))
		if ok || resp.Error == nil || resp.Error.Code != code {
			t.Errorf("parseCall(%s) = %+v, %v; want error %d", msg, resp.Error, ok, code)
		}
	}
}

// TestResultNotAppended: a codec may return bytes of its own instead of
// appending to the buffer it is given, even bytes that begin like an
// answer, and even with room after them: the answer carries them whole,
// and nothing is written into that room.
func TestResultNotAppended(t *testing.T) {
	own := make([]byte, 0, 256)
	own = append(own, `{"jsonrpc":"2.0","result":5}`...)
	reg := service.NewRegistry()
	err := reg.Register(service.Method{Name: "test.own", Inline: true,
		Handler: func(_ context.Context, _ service.Request, dst []byte) ([]byte, error) { return dst, nil },
		JSON: &service.JSONCodec{
			Params: func(_, dst []byte) ([]byte, error) { return dst, nil },
			Result: func(_, _ []byte) ([]byte, error) { return own, nil },
		}})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRPC(reg, 0)
	for range 2 {
		out, _ := r.Handle(context.Background(), &service.Caller{}, []byte(`{"jsonrpc":"2.0","method":"test.own","id":1}`))
		if want := `{"jsonrpc":"2.0","result":{"jsonrpc":"2.0","result":5},"id":1}`; string(out) != want {
			t.Fatalf("answer %s, want %s", out, want)
		}
	}
	if spare := own[len(own):cap(own)]; bytes.ContainsAny(spare, "{}\"") {
		t.Errorf("the engine wrote into the codec's own buffer: %q", bytes.Trim(spare, "\x00"))
	}
}

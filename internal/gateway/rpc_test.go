package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/internal/service"
	"github.com/nexo-project/nexo/internal/sys"
)

type source struct{}

func (source) ClientCount() int { return 0 }
func (source) Snapshot() any    { return map[string]any{"clients": []any{}} }

func newRPC(t testing.TB) *RPC {
	reg := service.NewRegistry()
	if err := reg.Register(calc.Methods()...); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(sys.Methods(source{}, reg, "test")...); err != nil {
		t.Fatal(err)
	}
	return NewRPC(reg, 0)
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url+"/rpc", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestConformance posts JSON-RPC messages to a real HTTP server on
// loopback and compares the whole response.
func TestConformance(t *testing.T) {
	srv := httptest.NewServer(newRPC(t).Handler())
	defer srv.Close()
	tests := []struct {
		name, body, want string
	}{
		{"div", `{"jsonrpc":"2.0","method":"math.div","params":[7,2],"id":1}`,
			`{"jsonrpc":"2.0","result":3.5,"id":1}`},
		{"add with string id", `{"jsonrpc":"2.0","method":"math.add","params":[2,3],"id":"a"}`,
			`{"jsonrpc":"2.0","result":5,"id":"a"}`},
		{"null id is a call", `{"jsonrpc":"2.0","method":"math.sub","params":[2,3],"id":null}`,
			`{"jsonrpc":"2.0","result":-1,"id":null}`},
		{"zero quotient is 0", `{"jsonrpc":"2.0","method":"math.div","params":[0,-5],"id":1}`,
			`{"jsonrpc":"2.0","result":0,"id":1}`},
		{"2^53 is accepted", `{"jsonrpc":"2.0","method":"math.add","params":[9007199254740992,-9007199254740992],"id":1}`,
			`{"jsonrpc":"2.0","result":0,"id":1}`},
		{"division by zero", `{"jsonrpc":"2.0","method":"math.div","params":[1,0],"id":2}`,
			`{"jsonrpc":"2.0","error":{"code":-32006,"message":"calc: division by zero","data":{"name":"DIVISION_BY_ZERO"}},"id":2}`},
		{"overflow", `{"jsonrpc":"2.0","method":"math.mul","params":[9007199254740992,9007199254740992],"id":3}`,
			`{"jsonrpc":"2.0","error":{"code":-32007,"message":"calc: integer overflow","data":{"name":"OVERFLOW"}},"id":3}`},
		{"beyond 2^53 is refused, not rounded", `{"jsonrpc":"2.0","method":"math.add","params":[9007199254740993,1],"id":4}`,
			`{"jsonrpc":"2.0","error":{"code":-32602,"message":"service: invalid params: 9007199254740993 is beyond ±2^53 and would be rounded","data":{"name":"BAD_PAYLOAD"}},"id":4}`},
		{"fraction", `{"jsonrpc":"2.0","method":"math.add","params":[1.5,2],"id":5}`,
			`{"jsonrpc":"2.0","error":{"code":-32602,"message":"service: invalid params: 1.5 is not an integer within ±2^53","data":{"name":"BAD_PAYLOAD"}},"id":5}`},
		{"one param", `{"jsonrpc":"2.0","method":"math.add","params":[1],"id":6}`,
			`{"jsonrpc":"2.0","error":{"code":-32602,"message":"service: invalid params: want [a, b], two integers","data":{"name":"BAD_PAYLOAD"}},"id":6}`},
		{"method not found", `{"jsonrpc":"2.0","method":"no.such","id":7}`,
			`{"jsonrpc":"2.0","error":{"code":-32601,"message":"method not found: no.such","data":{"name":"UNKNOWN_METHOD"}},"id":7}`},
		{"parse error", `{"jsonrpc":"2.0","method":`,
			`{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse error: not valid JSON"},"id":null}`},
		{"wrong version", `{"jsonrpc":"1.0","method":"math.add","params":[1,1],"id":8}`,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"jsonrpc\" must be \"2.0\""},"id":8}`},
		{"no method", `{"jsonrpc":"2.0","id":9}`,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"method\" must be a string"},"id":9}`},
		{"params not structured", `{"jsonrpc":"2.0","method":"math.add","params":"1,2","id":10}`,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: params must be an array or an object"},"id":10}`},
		{"object id", `{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":{}}`,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: id must be a string, a number or null"},"id":null}`},
		{"not an object", `1`,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: json: cannot unmarshal number into Go value of type gateway.request"},"id":null}`},
		{"empty batch", `[]`,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: empty batch"},"id":null}`},
		{"batch", `[{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1},{"jsonrpc":"2.0","method":"math.add","params":[5,5]},{"jsonrpc":"2.0","method":"math.div","params":[1,0],"id":2},1]`,
			`[{"jsonrpc":"2.0","result":3,"id":1},{"jsonrpc":"2.0","error":{"code":-32006,"message":"calc: division by zero","data":{"name":"DIVISION_BY_ZERO"}},"id":2},{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: json: cannot unmarshal number into Go value of type gateway.request"},"id":null}]`},
		{"echo", `{"jsonrpc":"2.0","method":"sys.echo","params":["héllo"],"id":1}`,
			`{"jsonrpc":"2.0","result":"héllo","id":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, got := post(t, srv.URL, tt.body)
			if status != http.StatusOK || got != tt.want {
				t.Errorf("status %d\n got %s\nwant %s", status, got, tt.want)
			}
		})
	}
}

func TestNotificationsAndHTTP(t *testing.T) {
	srv := httptest.NewServer(newRPC(t).Handler())
	defer srv.Close()
	for _, body := range []string{
		`{"jsonrpc":"2.0","method":"math.add","params":[1,2]}`,
		`[{"jsonrpc":"2.0","method":"math.add","params":[1,2]},{"jsonrpc":"2.0","method":"no.such"}]`,
	} {
		if status, got := post(t, srv.URL, body); status != http.StatusNoContent || got != "" {
			t.Errorf("notification %s: %d %q", body, status, got)
		}
	}
	resp, err := http.Get(srv.URL + "/rpc")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /rpc: %d", resp.StatusCode)
	}
	status, _ := post(t, srv.URL, `{"jsonrpc":"2.0","method":"sys.echo","params":["`+strings.Repeat("x", MaxBody)+`"],"id":1}`)
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d", status)
	}
	status, got := post(t, srv.URL, `{"jsonrpc":"2.0","method":"sys.info","id":1}`)
	var info struct {
		Result sys.Info `json:"result"`
	}
	if err := json.Unmarshal([]byte(got), &info); err != nil || status != 200 || len(info.Result.Methods) == 0 {
		t.Errorf("sys.info: %d %s", status, got)
	}
}

// TestPrivileged: sys.clients answers loopback callers only, and looks
// absent to the others.
func TestPrivileged(t *testing.T) {
	r := newRPC(t)
	msg := []byte(`{"jsonrpc":"2.0","method":"sys.clients","id":1}`)
	remote := string(r.Handle(context.Background(), &service.Caller{Door: "http", Remote: "192.0.2.7:4000"}, msg))
	if !strings.Contains(remote, `"code":-32601`) {
		t.Errorf("remote caller: %s", remote)
	}
	local := string(r.Handle(context.Background(), &service.Caller{Door: "http", Loopback: true}, msg))
	if !strings.Contains(local, `"result":{"clients":[]}`) {
		t.Errorf("loopback caller: %s", local)
	}
}

// FuzzHandle: any message gets either no answer (notifications) or valid
// JSON, and never a panic.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","method":"math.div","params":[7,2],"id":1}`,
		`[{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1},{"jsonrpc":"2.0","method":"x"}]`,
		`{"jsonrpc":"2.0","method":"sys.echo","params":["a"],"id":"z"}`,
		`{"jsonrpc":"2.0","method":"math.add","params":{"a":1},"id":null}`,
		`[]`, `[1,2]`, `{`, `null`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	r := newRPC(f)
	caller := &service.Caller{Door: "http", Loopback: true}
	f.Fuzz(func(t *testing.T, msg []byte) {
		out := r.Handle(context.Background(), caller, msg)
		if out != nil && !json.Valid(out) {
			t.Fatalf("invalid JSON answer %q to %q", out, msg)
		}
		if out == nil && !bytes.Contains(msg, []byte("method")) {
			t.Fatalf("no answer to %q, which cannot be a notification", msg)
		}
	})
}

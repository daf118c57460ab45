package backplane

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nexo-project/nexo/wire"
)

func TestBatchEntries(t *testing.T) {
	payloads := [][]byte{{}, []byte("a"), bytes.Repeat([]byte{0xff}, 300)}
	var req, resp []byte
	for i, p := range payloads {
		req = appendRequestEntry(req, int64(1700000000000+i), p)
		resp = appendResponseEntry(resp, wire.Code(i), p)
	}
	rest := req
	for i, want := range payloads {
		d, p, tail, err := nextRequestEntry(rest)
		if err != nil || d != int64(1700000000000+i) || !bytes.Equal(p, want) {
			t.Fatalf("request %d: %d %q %v", i, d, p, err)
		}
		if cap(p) != len(p) {
			t.Errorf("request %d: the payload may be appended to in place (cap %d > len %d)", i, cap(p), len(p))
		}
		rest = tail
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes left", len(rest))
	}
	rest = resp
	for i, want := range payloads {
		c, b, tail, err := nextResponseEntry(rest)
		if err != nil || c != wire.Code(i) || !bytes.Equal(b, want) {
			t.Fatalf("answer %d: %v %q %v", i, c, b, err)
		}
		rest = tail
	}

	bad := []struct {
		name string
		b    []byte
		resp bool
	}{
		{"empty request", nil, false},
		{"short request header", make([]byte, reqEntryHeader-1), false},
		{"request longer than the rest", appendRequestEntry(nil, 1, []byte("abc"))[:reqEntryHeader+2], false},
		{"empty answer", nil, true},
		{"short answer header", make([]byte, respEntryHeader-1), true},
		{"answer longer than the rest", appendResponseEntry(nil, 0, []byte("abc"))[:respEntryHeader+1], true},
		{"length of 4 GiB", []byte{0, 0, 0xff, 0xff, 0xff, 0xff}, true},
	}
	for _, tt := range bad {
		var err error
		if tt.resp {
			_, _, _, err = nextResponseEntry(tt.b)
		} else {
			_, _, _, err = nextRequestEntry(tt.b)
		}
		if err != errBadBatch {
			t.Errorf("%s: %v, want errBadBatch", tt.name, err)
		}
	}

	for _, tt := range []struct {
		v    string
		want int
	}{{"", 0}, {"1", 1}, {"1024", 1024}, {"1025", -1}, {"0", -1}, {"-3", -1}, {"x", -1}} {
		if got := batchCount(tt.v); got != tt.want {
			t.Errorf("batchCount(%q) = %d, want %d", tt.v, got, tt.want)
		}
	}
}

// FuzzBatch feeds arbitrary bytes to both batch decoders: they must not
// panic, must stay within the input, and what they accept must encode back
// to the same bytes.
func FuzzBatch(f *testing.F) {
	f.Add(appendRequestEntry(appendRequestEntry(nil, 5, []byte("xy")), 0, nil))
	f.Add(appendResponseEntry(appendResponseEntry(nil, 0, []byte("ok")), wire.CodeOverflow, []byte("overflow")))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var out []byte
		rest := b
		for len(rest) > 0 {
			d, p, tail, err := nextRequestEntry(rest)
			if err != nil {
				break
			}
			if len(tail) >= len(rest) {
				t.Fatal("no progress")
			}
			out = appendRequestEntry(out, d, p)
			rest = tail
		}
		if !bytes.Equal(out, b[:len(b)-len(rest)]) {
			t.Fatalf("request entries re-encode to %x, want %x", out, b[:len(b)-len(rest)])
		}
		out, rest = nil, b
		for len(rest) > 0 {
			c, body, tail, err := nextResponseEntry(rest)
			if err != nil {
				break
			}
			out = appendResponseEntry(out, c, body)
			rest = tail
		}
		if !bytes.Equal(out, b[:len(b)-len(rest)]) {
			t.Fatalf("answer entries re-encode to %x, want %x", out, b[:len(b)-len(rest)])
		}
	})
}

// TestForeignCodes: a code a client may not get (one that closes a
// connection, 14..999, garbage) becomes INTERNAL without the worker's
// words, which may be a stack trace; application codes pass with theirs.
func TestForeignCodes(t *testing.T) {
	for _, tt := range []struct {
		code, msg string
		want      wire.Code
		keep      bool
	}{
		{"1", "goroutine 1 [running]: main.go:12", wire.CodeInternal, false},
		{"14", "secret", wire.CodeInternal, false},
		{"x", "secret", wire.CodeInternal, false},
		{"7", "calc: integer overflow", wire.CodeOverflow, true},
		{"1001", "no such user", 1001, true},
	} {
		err, ok := replyError(nats.Header{micro.ErrorCodeHeader: []string{tt.code}, micro.ErrorHeader: []string{tt.msg}})
		var we *wire.Error
		if !ok || !errors.As(err, &we) || we.Code != tt.want || strings.Contains(we.Msg, tt.msg) != tt.keep {
			t.Errorf("code %s %q: %v", tt.code, tt.msg, err)
		}
	}
}

// TestConnectSaysNotReachable: a process whose NATS is not there says so
// at once, instead of staying silent while it retries.
func TestConnectSaysNotReachable(t *testing.T) {
	var logs bytes.Buffer
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + ln.Addr().String()
	ln.Close() // nobody listens there now
	nc, err := Connect(ConnectOptions{URL: url, Name: "test", Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if !strings.Contains(logs.String(), "NATS not reachable yet") {
		t.Errorf("logs: %s", logs.String())
	}
}

package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/nexo-project/nexo/internal/chunked"
)

// FuzzReadFrame feeds arbitrary bytes to the decoder. It must never panic,
// every error must be a protocol error or an end of stream, the buffer must
// stay within the limit, and every frame it accepts must re-encode to the
// exact bytes it came from.
func FuzzReadFrame(f *testing.F) {
	hello, _ := AppendJSON(nil, TypeHello, Hello{Name: "fuzz"})
	seeds := [][]byte{
		hello,
		AppendRequest(nil, 1, "math.add", make([]byte, 16)),
		AppendRequestDeadline(nil, 2, 100, "sys.echo", []byte("x")),
		AppendResponse(nil, 3, []byte{1}),
		AppendError(nil, 4, CodeOverflow, "m"),
		AppendFrame(nil, TypePing, 0, 5, []byte("12345678")),
		AppendFrame(nil, TypePong, 0, 5, nil),
		AppendEvent(nil, "topic", []byte("p")),
		AppendGoodbye(nil, "bye"),
		{0xff, 0xff, 0xff, 0xff},
		hdr(8, 2, TypePing, 0, 0),
		raw(TypeRequest, FlagDeadline, 1, []byte{0, 0}),
		raw(TypePing, 0x8000, 0, nil),
		append(AppendResponse(nil, 1, nil), AppendGoodbye(nil, "")...),
		AppendRequestFlags(nil, 6, FlagTrace|FlagDeadline, 9, make([]byte, TraceLen), "math.add", nil),
		raw(TypeRequest, FlagTrace, 1, make([]byte, TraceLen)),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	const limit = 4096
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), limit)
		// Half the inputs are read as on a connection that agreed to the
		// trace extension, so its REQUEST layout is decoded too.
		traced := len(data) > 0 && data[len(data)-1]&1 == 1
		if traced {
			r.AllowFlags(FlagTrace)
		}
		consumed := 0
		for {
			fr, err := r.ReadFrame()
			if len(r.buf) > 4+limit && len(r.buf) > initialReadBuf {
				t.Fatalf("buffer grew to %d past the limit", len(r.buf))
			}
			if err != nil {
				var we *Error
				if !errors.As(err, &we) && err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				if we != nil && !we.Code.ClosesConn() {
					t.Fatalf("decoder error %v does not close the connection", we.Code)
				}
				return
			}
			if fr.Flags&FlagTrace != 0 {
				req, err := ParseRequest(fr)
				if !traced || err != nil || len(req.Trace) != TraceLen {
					t.Fatalf("a TRACE REQUEST read (the extension agreed: %v): trace of %d bytes, err %v", traced, len(req.Trace), err)
				}
			}
			enc := AppendFrame(nil, fr.Type, fr.Flags, fr.ID, fr.Body)
			if !bytes.Equal(enc, data[consumed:consumed+len(enc)]) {
				t.Fatalf("re-encoded % x, input % x", enc, data[consumed:consumed+len(enc)])
			}
			consumed += len(enc)
		}
	})
}

// FuzzReadFrameWouldBlock: read from a non-blocking source, in chunks cut
// anywhere, with ErrWouldBlock between them, the decoder returns exactly
// the frames and the final error it returns reading the same bytes at
// once, and so does it from a source that lends its chunks (Lender): what
// an event loop reads is what a goroutine reads.
func FuzzReadFrameWouldBlock(f *testing.F) {
	f.Add(AppendRequest(nil, 1, "math.add", make([]byte, 16)), []byte{3, 40})
	f.Add(append(AppendFrame(nil, TypePing, 0, 5, []byte("12345678")), 0xff, 0xff, 0xff, 0xff), []byte{0})
	f.Add(append(AppendRequest(nil, 1, "x", nil), AppendGoodbye(nil, "bye")...), []byte{200, 1})
	f.Add(append(AppendRequest(nil, 1, "math.add", make([]byte, 16)), AppendRequest(nil, 2, "math.add", make([]byte, 16))...), []byte{40}) // the second frame cut in two
	const limit = 4096
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		type result struct {
			frames []string
			err    string
		}
		read := func(r *Reader) result {
			var res result
			for blocked := 0; ; {
				fr, err := r.ReadFrame()
				if err == ErrWouldBlock {
					if blocked++; blocked > 2*len(data)+2 {
						t.Fatal("ErrWouldBlock again and again: it was kept")
					}
					continue
				}
				if err != nil {
					res.err = err.Error()
					return res
				}
				res.frames = append(res.frames, string(AppendFrame(nil, fr.Type, fr.Flags, fr.ID, fr.Body)))
			}
		}
		whole := read(NewReader(bytes.NewReader(data), limit))
		cut := read(NewReader(&chunked.Reader{Data: data, Cuts: cuts, Block: ErrWouldBlock}, limit))
		lent := read(NewReader(&lender{src: chunked.Reader{Data: data, Cuts: cuts, Block: ErrWouldBlock}}, limit))
		for _, c := range []struct {
			how string
			res result
		}{{"in chunks", cut}, {"in lent chunks", lent}} {
			if len(whole.frames) != len(c.res.frames) || whole.err != c.res.err {
				t.Fatalf("at once: %d frames, %q; %s: %d frames, %q", len(whole.frames), whole.err, c.how, len(c.res.frames), c.res.err)
			}
			for i := range whole.frames {
				if whole.frames[i] != c.res.frames[i] {
					t.Fatalf("%s: frame %d differs", c.how, i)
				}
			}
		}
	})
}

// lender lends each chunk of src in a buffer of its own (a Lender, as an
// event loop's source is), and scribbles over the last one before it
// reads again: a Reader that used lent bytes after asking for more, or
// kept none of a frame cut in two, would read garbage.
type lender struct {
	src  chunked.Reader
	lent []byte
}

func (l *lender) scribble() {
	for i := range l.lent {
		l.lent[i] = 0xa5
	}
}

func (l *lender) Read(p []byte) (int, error) {
	l.scribble()
	return l.src.Read(p)
}

func (l *lender) Lend() ([]byte, error) {
	l.scribble()
	buf := make([]byte, 256) // a chunk is at most 256 bytes
	n, err := l.src.Read(buf)
	if err != nil {
		return nil, err
	}
	l.lent = buf[:n]
	return l.lent, nil
}

// FuzzParseHello: a HELLO body is accepted exactly when it is a JSON object
// (or empty) whose name, token and trace, taken by their exact names, are
// strings, a string and a boolean (or null), with a name of at most 64
// bytes; what it returns is those members; an error is BAD_FRAME.
func FuzzParseHello(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"name":"a","token":"t","trace":true}`, `{"Name":"a","name":"b"}`,
		`{"name":5}`, `{"token":null}`, `[]`, `null`, `{"name":"\u00e9"}`, ` {"x":{"name":1}}`, `{"x":1e999}`, `{"name":1e999}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := ParseHello(body)
		var want Hello
		ok := true
		if len(bytes.TrimSpace(body)) > 0 {
			// Members as raw values, then each of the three as any: a
			// number no float64 holds ({"x":1e999}) is valid JSON, and
			// an unknown member may be one.
			var m map[string]json.RawMessage
			ok = bytes.TrimSpace(body)[0] == '{' && json.Unmarshal(body, &m) == nil
			take := func(name string, dst any) {
				var v any
				if raw, there := m[name]; there {
					d := json.NewDecoder(bytes.NewReader(raw))
					d.UseNumber()
					if d.Decode(&v) != nil {
						ok = false
						return
					}
				}
				switch v := v.(type) {
				case nil:
				case string:
					if p, is := dst.(*string); is {
						*p = v
						return
					}
					ok = false
				case bool:
					if p, is := dst.(*bool); is {
						*p = v
						return
					}
					ok = false
				default:
					ok = false
				}
			}
			take("name", &want.Name)
			take("token", &want.Token)
			take("trace", &want.Trace)
			ok = ok && len(want.Name) <= MaxNameLen
		}
		if (err == nil) != ok || (ok && h != want) {
			t.Fatalf("ParseHello(%q) = %+v, %v; want %+v, accepted %v", body, h, err, want, ok)
		}
		if err != nil && !errors.Is(err, CodeBadFrame) {
			t.Fatalf("ParseHello(%q): %v is not BAD_FRAME", body, err)
		}
	})
}

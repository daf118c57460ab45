package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/nexo-project/nexo/internal/chunked"
)

// hdr builds a raw header: length, version, type, flags, id.
func hdr(length uint32, version byte, t Type, flags Flags, id uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, length)
	b = append(b, version, byte(t))
	b = binary.BigEndian.AppendUint16(b, uint16(flags))
	return binary.BigEndian.AppendUint32(b, id)
}

func raw(t Type, flags Flags, id uint32, body []byte) []byte {
	return append(hdr(uint32(8+len(body)), Version, t, flags, id), body...)
}

func TestEncodeExactBytes(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"request", AppendRequest(nil, 7, "math.add", []byte{1, 2}),
			raw(TypeRequest, 0, 7, append([]byte{8}, "math.add\x01\x02"...))},
		{"request with deadline", AppendRequestDeadline(nil, 9, 1500, "m", nil),
			raw(TypeRequest, FlagDeadline, 9, []byte{0, 0, 0x05, 0xdc, 1, 'm'})},
		{"response", AppendResponse(nil, 0xdeadbeef, []byte("x")), raw(TypeResponse, 0, 0xdeadbeef, []byte("x"))},
		{"empty response", AppendResponse(nil, 1, nil), raw(TypeResponse, 0, 1, nil)},
		{"error", AppendError(nil, 3, CodeOverflow, "big"), raw(TypeError, 0, 3, []byte{0, 7, 'b', 'i', 'g'})},
		{"ping", AppendFrame(nil, TypePing, 0, 5, []byte("hi")), raw(TypePing, 0, 5, []byte("hi"))},
		{"event", AppendEvent(nil, "clients", []byte("{}")), raw(TypeEvent, 0, 0, []byte("\x07clients{}"))},
		{"goodbye", AppendGoodbye(nil, "bye"), raw(TypeGoodbye, 0, 0, []byte("bye"))},
		{"appends", AppendGoodbye([]byte("prefix"), ""), append([]byte("prefix"), raw(TypeGoodbye, 0, 0, nil)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Equal(tt.got, tt.want) {
				t.Errorf("got  % x\nwant % x", tt.got, tt.want)
			}
		})
	}
}

func TestRoundTripEveryType(t *testing.T) {
	hello, _ := AppendJSON(nil, TypeHello, Hello{Name: "n", Token: "t"})
	welcome, _ := AppendJSON(nil, TypeWelcome, Welcome{ClientID: 42, Server: "nexo/0.1.0", HeartbeatMS: 5000, MaxFrame: 1 << 20})
	frames := [][]byte{
		hello, welcome,
		AppendRequest(nil, 1, "math.add", make([]byte, 16)),
		AppendRequestDeadline(nil, 2, 0, "sys.echo", nil),
		AppendResponse(nil, 3, []byte{1, 2, 3}),
		AppendError(nil, 4, CodeDivisionByZero, ""),
		AppendFrame(nil, TypePing, 0, 5, bytes.Repeat([]byte{9}, MaxPingBody)),
		AppendFrame(nil, TypePong, 0, 5, nil),
		AppendEvent(nil, "t", nil),
		AppendGoodbye(nil, "done"),
	}
	var stream []byte
	for _, f := range frames {
		stream = append(stream, f...)
	}
	// One byte per read, to prove frames are reassembled across reads.
	r := NewReader(&oneByteReader{stream}, 0)
	for i, want := range frames {
		f, err := r.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got := AppendFrame(nil, f.Type, f.Flags, f.ID, f.Body); !bytes.Equal(got, want) {
			t.Errorf("frame %d: re-encoded % x, want % x", i, got, want)
		}
		switch f.Type {
		case TypeHello:
			if h, err := ParseHello(f.Body); err != nil || h != (Hello{Name: "n", Token: "t"}) {
				t.Errorf("hello = %+v, %v", h, err)
			}
		case TypeWelcome:
			if w, err := ParseWelcome(f.Body); err != nil || w.ClientID != 42 || w.HeartbeatMS != 5000 {
				t.Errorf("welcome = %+v, %v", w, err)
			}
		case TypeRequest:
			req, err := ParseRequest(f)
			if err != nil {
				t.Fatal(err)
			}
			if f.ID == 2 && (!req.HasDeadline || req.Deadline != 0 || string(req.Method) != "sys.echo") {
				t.Errorf("deadline request = %+v", req)
			}
			if f.ID == 1 && (req.HasDeadline || string(req.Method) != "math.add" || len(req.Payload) != 16) {
				t.Errorf("request = %+v", req)
			}
		case TypeError:
			we, err := ParseError(f.Body)
			if err != nil || we.Code != CodeDivisionByZero || !errors.Is(we, CodeDivisionByZero) || errors.Is(we, CodeOverflow) {
				t.Errorf("error = %v, %v", we, err)
			}
		case TypeEvent:
			topic, payload, err := ParseEvent(f.Body)
			if err != nil || string(topic) != "t" || len(payload) != 0 {
				t.Errorf("event = %q %q %v", topic, payload, err)
			}
		}
	}
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Errorf("after the last frame: %v, want io.EOF", err)
	}
}

type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

func TestReadFrameErrors(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		code  Code // 0: want the plain error below
		err   error
	}{
		{"length below 8", hdr(7, 1, TypePing, 0, 0)[:4], CodeBadFrame, nil},
		{"length 0", []byte{0, 0, 0, 0}, CodeBadFrame, nil},
		{"length claims 4 GiB", []byte{0xff, 0xff, 0xff, 0xff}, CodeFrameTooLarge, nil},
		{"length one over the limit", hdr(1025, 1, TypeResponse, 0, 0), CodeFrameTooLarge, nil},
		{"version 2", hdr(8, 2, TypePing, 0, 0), CodeUnsupportedVersion, nil},
		{"version 0", hdr(8, 0, TypePing, 0, 0), CodeUnsupportedVersion, nil},
		{"type 0", raw(0, 0, 0, nil), CodeBadFrame, nil},
		{"type 10", raw(10, 0, 0, nil), CodeBadFrame, nil},
		{"unknown flag", raw(TypePing, 0x0002, 0, nil), CodeBadFrame, nil},
		{"deadline flag on a ping", raw(TypePing, FlagDeadline, 0, nil), CodeBadFrame, nil},
		{"request without body", raw(TypeRequest, 0, 1, nil), CodeBadFrame, nil},
		{"request method length 0", raw(TypeRequest, 0, 1, []byte{0}), CodeBadFrame, nil},
		{"request method longer than body", raw(TypeRequest, 0, 1, []byte{5, 'a'}), CodeBadFrame, nil},
		{"request method not ASCII", raw(TypeRequest, 0, 1, []byte{2, 0xc3, 0xa9}), CodeBadFrame, nil},
		{"request deadline cut short", raw(TypeRequest, FlagDeadline, 1, []byte{0, 0}), CodeBadFrame, nil},
		{"error without code", raw(TypeError, 0, 1, []byte{0}), CodeBadFrame, nil},
		{"ping over 64 bytes", raw(TypePing, 0, 1, make([]byte, 65)), CodeBadFrame, nil},
		{"event without topic", raw(TypeEvent, 0, 0, []byte{0}), CodeBadFrame, nil},
		{"truncated header", raw(TypePing, 0, 0, nil)[:7], 0, io.ErrUnexpectedEOF},
		{"truncated body", raw(TypeResponse, 0, 0, []byte("abc"))[:13], 0, io.ErrUnexpectedEOF},
		{"empty stream", nil, 0, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tt.input), 1024).ReadFrame()
			if tt.code == 0 {
				if err != tt.err {
					t.Fatalf("got %v, want %v", err, tt.err)
				}
				return
			}
			var we *Error
			if !errors.As(err, &we) || we.Code != tt.code {
				t.Fatalf("got %v, want a %v error", err, tt.code)
			}
			if !errors.Is(err, tt.code) {
				t.Errorf("errors.Is(err, %v) = false", tt.code)
			}
		})
	}
}

// A peer that claims a huge frame must not make the reader allocate it:
// past the limit nothing grows; within it, growth stops at the limit.
func TestReaderNeverAllocatesClaimedLength(t *testing.T) {
	tests := []struct {
		name    string
		claim   uint32
		maxBuf  int
		errCode Code
	}{
		{"4 GiB claim", 0xffffffff, initialReadBuf, CodeFrameTooLarge},
		{"one over the limit", 1<<16 + 1, initialReadBuf, CodeFrameTooLarge},
		{"at the limit, body never comes", 1 << 16, 4 + 1<<16, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(hdr(tt.claim, 1, TypeResponse, 0, 0)), 1<<16)
			_, err := r.ReadFrame()
			if tt.errCode != 0 && !errors.Is(err, tt.errCode) {
				t.Fatalf("err = %v, want %v", err, tt.errCode)
			}
			if tt.errCode == 0 && err != io.ErrUnexpectedEOF {
				t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
			}
			if len(r.buf) > tt.maxBuf {
				t.Errorf("buffer is %d bytes, want at most %d", len(r.buf), tt.maxBuf)
			}
		})
	}
}

func TestParseHello(t *testing.T) {
	tests := []struct {
		body string
		want Hello
		ok   bool
	}{
		{``, Hello{}, true},
		{`{}`, Hello{}, true},
		{` {"name":"bob","token":"s","extra":1}`, Hello{Name: "bob", Token: "s"}, true},
		{`{"name":"` + strings.Repeat("x", 64) + `"}`, Hello{Name: strings.Repeat("x", 64)}, true},
		{`{"name":"` + strings.Repeat("x", 65) + `"}`, Hello{}, false},
		{`[]`, Hello{}, false},
		{`{"name":`, Hello{}, false},
		{`{"name":5}`, Hello{}, false},
		{`null`, Hello{}, false},
		// Member names are case-sensitive: these are unknown members.
		{`{"NAME":"bob","Token":"s","Trace":true}`, Hello{}, true},
		{`{"name":"a","Name":"b","token":"t","TOKEN":"u"}`, Hello{Name: "a", Token: "t"}, true},
		{`{"Name":5}`, Hello{}, true},
	}
	for _, tt := range tests {
		h, err := ParseHello([]byte(tt.body))
		if (err == nil) != tt.ok || (tt.ok && h != tt.want) {
			t.Errorf("ParseHello(%q) = %+v, %v; want %+v ok=%v", tt.body, h, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, CodeBadFrame) {
			t.Errorf("ParseHello(%q) error %v is not BAD_FRAME", tt.body, err)
		}
	}
}

// TestParseWelcome: a WELCOME's members are read by their exact names, and
// a member of the wrong type is named in the error.
func TestParseWelcome(t *testing.T) {
	w, err := ParseWelcome([]byte(`{"client_id":7,"server":"nexo/1","heartbeat_ms":5000,"max_frame":1024,"trace":true,"Client_ID":9,"extra":[1]}`))
	if want := (Welcome{ClientID: 7, Server: "nexo/1", HeartbeatMS: 5000, MaxFrame: 1024, Trace: true}); err != nil || w != want {
		t.Errorf("ParseWelcome = %+v, %v; want %+v", w, err, want)
	}
	if w, err := ParseWelcome([]byte(`{"CLIENT_ID":7,"Server":"x"}`)); err != nil || w != (Welcome{}) {
		t.Errorf("ParseWelcome of members in the wrong case = %+v, %v; want them ignored", w, err)
	}
	_, err = ParseWelcome([]byte(`{"client_id":"7"}`))
	if !errors.Is(err, CodeBadFrame) || !strings.Contains(err.Error(), "client_id") {
		t.Errorf("ParseWelcome of a string client_id: %v; want BAD_FRAME naming client_id", err)
	}
}

func TestCodes(t *testing.T) {
	for c := CodeBadFrame; c <= CodeUnavailable; c++ {
		got, ok := ParseCode(c.String())
		if !ok || got != c {
			t.Errorf("ParseCode(%q) = %v, %v", c.String(), got, ok)
		}
	}
	closing := map[Code]bool{CodeBadFrame: true, CodeUnsupportedVersion: true, CodeUnauthorized: true, CodeFrameTooLarge: true}
	for c := CodeBadFrame; c <= CodeUnavailable; c++ {
		if c.ClosesConn() != closing[c] {
			t.Errorf("%v.ClosesConn() = %v", c, c.ClosesConn())
		}
	}
	if CodeDivisionByZero.String() != "DIVISION_BY_ZERO" || Code(99).String() != "CODE_99" || Type(0).String() != "Type(0)" {
		t.Error("names")
	}
	for _, c := range []Code{1000, 1001, 65535} {
		if got, ok := ParseCode(c.String()); !ok || got != c || !c.Application() || !c.Answerable() {
			t.Errorf("application code %d: ParseCode(%q) = %v, %v", c, c.String(), got, ok)
		}
	}
	for _, name := range []string{"CODE_99", "CODE_65536", "CODE_01001", "CODE_+1001", "CODE_"} {
		if _, ok := ParseCode(name); ok {
			t.Errorf("ParseCode accepted %q", name)
		}
	}
	if Code(14).Answerable() || Code(999).Answerable() || CodeBadFrame.Answerable() || !CodeTimeout.Answerable() {
		t.Error("Answerable")
	}
	if _, ok := ParseCode("NOPE"); ok {
		t.Error("ParseCode accepted an unknown name")
	}
}

// TestZeroAllocs pins what the benchmarks show: the request/response path
// of the codec allocates nothing.
func TestZeroAllocs(t *testing.T) {
	payload := make([]byte, 16)
	buf := make([]byte, 0, 256)
	var stream loopReader
	r := NewReader(&stream, 0)
	allocs := testing.AllocsPerRun(1000, func() {
		buf = AppendRequest(buf[:0], 1, "math.add", payload)
		buf = AppendResponse(buf, 1, payload[:8])
		stream.b = buf
		f, err := r.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseRequest(f); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocs per request+response, want 0", allocs)
	}
}

// loopReader hands out b once per Read call, so a Reader can be fed again.
type loopReader struct{ b []byte }

func (l *loopReader) Read(p []byte) (int, error) {
	if len(l.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, l.b)
	l.b = l.b[n:]
	return n, nil
}

func BenchmarkEncodeRequest(b *testing.B) {
	payload := make([]byte, 16)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRequest(buf[:0], 1, "math.add", payload)
	}
}

func BenchmarkEncodeResponse(b *testing.B) {
	payload := make([]byte, 8)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendResponse(buf[:0], 1, payload)
	}
}

func BenchmarkDecodeRequest(b *testing.B) {
	frame := AppendRequest(nil, 1, "math.add", make([]byte, 16))
	var stream loopReader
	r := NewReader(&stream, 0)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		stream.b = frame
		f, err := r.ReadFrame()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ParseRequest(f); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeResponse(b *testing.B) {
	frame := AppendResponse(nil, 1, make([]byte, 8))
	var stream loopReader
	r := NewReader(&stream, 0)
	b.ReportAllocs()
	for b.Loop() {
		stream.b = frame
		if _, err := r.ReadFrame(); err != nil {
			b.Fatal(err)
		}
	}
}

// burstReader hands out one queued burst per Read call, as a socket does
// when a client writes bursts with pauses in between.
type burstReader struct{ bursts [][]byte }

func (b *burstReader) Read(p []byte) (int, error) {
	if len(b.bursts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.bursts[0])
	if b.bursts[0] = b.bursts[0][n:]; len(b.bursts[0]) == 0 {
		b.bursts = b.bursts[1:]
	}
	return n, nil
}

// TestReaderBuffers: a Reader waits in its small buffer, moves to a large
// buffer for a burst that does not fit, and gives the large buffer back
// once a burst fits the small buffer again, so an idle connection holds no
// large read buffer.
func TestReaderBuffers(t *testing.T) {
	small := AppendRequest(nil, 1, "math.add", make([]byte, 16))
	var big []byte
	for i := range 64 {
		big = AppendRequest(big, uint32(i+2), "math.add", make([]byte, 16))
	}
	huge := AppendFrame(nil, TypeRequest, 0, 99, append([]byte{1, 'x'}, make([]byte, 20000)...))
	br := &burstReader{bursts: [][]byte{small, big, small, huge, small}}
	r := NewReader(br, 0)
	read := func(n int) {
		t.Helper()
		for range n {
			if _, err := r.ReadFrame(); err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := []struct {
		name   string
		frames int
		bigBuf bool // a large buffer is held after the burst
	}{
		{"a small burst", 1, false},
		{"a burst of 64 pipelined requests", 64, true},
		{"a small burst again", 1, true}, // the large buffer goes back at the next wait
		{"a frame of 20 KB", 1, true},
		{"a small burst after it", 1, true},
	}
	for _, st := range steps {
		read(st.frames)
		if got := len(r.buf) > smallReadBuf; got != st.bigBuf {
			t.Errorf("after %s: large buffer %v (len %d), want %v", st.name, got, len(r.buf), st.bigBuf)
		}
	}
	// The next wait, for data that never comes, happens in the small buffer.
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Fatalf("end: %v, want EOF", err)
	}
	if len(r.buf) != smallReadBuf || r.big != nil {
		t.Errorf("waiting with a buffer of %d bytes (pooled %v), want the small array", len(r.buf), r.big != nil)
	}
}

// TestReaderLends: from a Lender, whole frames are read where they were
// lent, with no buffer of the Reader's own; a frame a read cut in two is
// completed in one; Keep takes what is left of a lent buffer before its
// owner reuses it.
func TestReaderLends(t *testing.T) {
	var two []byte
	for i := range 2 {
		two = AppendRequest(two, uint32(i+1), "math.add", make([]byte, 16))
	}
	whole := len(two) / 2
	l := &lender{src: chunked.Reader{Data: two, Cuts: []byte{255}, Block: ErrWouldBlock}}
	r := NewReader(l, 0)
	next := func(id uint32) Frame {
		t.Helper()
		for {
			f, err := r.ReadFrame()
			if err == ErrWouldBlock {
				continue
			}
			if err != nil || f.ID != id {
				t.Fatalf("frame %d: %v, id %d", id, err, f.ID)
			}
			return f
		}
	}
	f := next(1)
	if &f.Body[0] != &l.lent[whole-len(f.Body)] {
		t.Error("the body was copied out of the lent buffer")
	}
	next(2)
	if r.small != nil || r.big != nil {
		t.Errorf("whole frames made a buffer of the Reader's own (small %v, pooled %v)", r.small != nil, r.big != nil)
	}

	// Cut in two: the first part is kept before the second is read.
	l = &lender{src: chunked.Reader{Data: two, Cuts: []byte{byte(whole + 4)}, Block: ErrWouldBlock}}
	r = NewReader(l, 0)
	next(1)
	next(2)
	if r.small == nil {
		t.Error("a frame cut in two was completed without a buffer of the Reader's own")
	}

	// Keep: the owner reuses its buffer while the Reader holds a frame of it.
	l = &lender{src: chunked.Reader{Data: two, Cuts: []byte{255}, Block: ErrWouldBlock}}
	r = NewReader(l, 0)
	next(1)
	r.Keep()
	l.scribble()
	if f := next(2); !bytes.Equal(f.Body, two[whole+HeaderLen:]) {
		t.Errorf("after Keep: body %x", f.Body)
	}
}

// TestTraceExtension: FlagTrace is BAD_FRAME unless the reader was told
// the connection agreed to it; then a REQUEST carries its 25 bytes after
// the deadline, and one too short for them is BAD_FRAME.
func TestTraceExtension(t *testing.T) {
	tc := bytes.Repeat([]byte{7}, TraceLen)
	frame := AppendRequestFlags(nil, 3, FlagDeadline|FlagTrace, 250, tc, "math.add", []byte("pay"))
	if _, err := NewReader(bytes.NewReader(frame), 0).ReadFrame(); !errors.Is(err, CodeBadFrame) {
		t.Errorf("TRACE without the extension: %v, want BAD_FRAME", err)
	}
	r := NewReader(bytes.NewReader(frame), 0)
	r.AllowFlags(FlagTrace)
	f, err := r.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	req, err := ParseRequest(f)
	if err != nil || req.Deadline != 250 || !bytes.Equal(req.Trace, tc) || string(req.Method) != "math.add" || string(req.Payload) != "pay" {
		t.Errorf("got %+v, %v", req, err)
	}
	short := AppendFrame(nil, TypeRequest, FlagTrace, 4, tc[:TraceLen-1])
	r = NewReader(bytes.NewReader(short), 0)
	r.AllowFlags(FlagTrace)
	if _, err := r.ReadFrame(); !errors.Is(err, CodeBadFrame) {
		t.Errorf("a body too short for the trace context: %v, want BAD_FRAME", err)
	}
	ping := AppendFrame(nil, TypePing, FlagTrace, 0, nil)
	r = NewReader(bytes.NewReader(ping), 0)
	r.AllowFlags(FlagTrace)
	if _, err := r.ReadFrame(); !errors.Is(err, CodeBadFrame) {
		t.Errorf("TRACE on a PING: %v, want BAD_FRAME", err)
	}
}

// TestParseHelloTrace: HELLO's trace is a boolean; another type is
// BAD_FRAME, like a name that is not a string.
func TestParseHelloTrace(t *testing.T) {
	if h, err := ParseHello([]byte(`{"name":"a","trace":true}`)); err != nil || !h.Trace {
		t.Errorf("trace true: %+v, %v", h, err)
	}
	if h, err := ParseHello([]byte(`{"name":"a"}`)); err != nil || h.Trace {
		t.Errorf("no trace: %+v, %v", h, err)
	}
	if _, err := ParseHello([]byte(`{"trace":"yes"}`)); !errors.Is(err, CodeBadFrame) {
		t.Errorf(`trace "yes": %v, want BAD_FRAME`, err)
	}
}

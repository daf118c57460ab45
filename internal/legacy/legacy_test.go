package legacy

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/nexo-project/nexo/internal/chunked"

	"github.com/nexo-project/nexo/wire"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// TestGoldenPackets pins the byte layout of packets in both orders to what
// Python's struct.pack("ihh", len(cmd), a, b) + cmd produces (the golden
// file was checked against python3: see testdata/seed_pack.py).
func TestGoldenPackets(t *testing.T) {
	var sb strings.Builder
	for _, order := range []binary.AppendByteOrder{binary.LittleEndian, binary.BigEndian} {
		for _, c := range []struct {
			cmd  string
			a, b int16
		}{{"SUMA", 3, 4}, {"RESTA", -1, 32767}, {"MULTIPLICACION", -32768, 2}, {"DIVISION", 7, 0}} {
			fmt.Fprintf(&sb, "%s %s %d %d %s\n", order, c.cmd, c.a, c.b, hex.EncodeToString(Append(nil, order, c.cmd, c.a, c.b)))
		}
	}
	golden := "testdata/packets.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if sb.String() != string(want) {
		t.Errorf("packets differ from %s (run with -update if the change is intended):\n%s", golden, sb.String())
	}
}

func TestDecodeBothOrders(t *testing.T) {
	for _, order := range []binary.AppendByteOrder{binary.LittleEndian, binary.BigEndian} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			var stream []byte
			stream = Append(stream, order, "SUMA", -5, 9)
			stream = Append(stream, order, "DIVISION", 32767, -32768)
			stream = Append(stream, order, strings.Repeat("X", 32), 1, 1)
			d := NewDecoder(bytes.NewReader(stream))
			for _, want := range []Packet{{[]byte("SUMA"), -5, 9}, {[]byte("DIVISION"), 32767, -32768}, {[]byte(strings.Repeat("X", 32)), 1, 1}} {
				if !d.HasPacket() {
					// Nothing is buffered before the first read.
					if d.Buffered() > 0 {
						t.Fatal("HasPacket false with a whole packet buffered")
					}
				}
				p, err := d.Decode()
				if err != nil {
					t.Fatal(err)
				}
				if string(p.Command) != string(want.Command) || p.A != want.A || p.B != want.B {
					t.Errorf("got %q %d %d, want %q %d %d", p.Command, p.A, p.B, want.Command, want.A, want.B)
				}
			}
			if d.Order() != order.(binary.ByteOrder) {
				t.Errorf("order %v", d.Order())
			}
			if _, err := d.Decode(); err != io.EOF {
				t.Errorf("at the end: %v", err)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	le := func(n int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(n)) }
	tests := []struct {
		name  string
		input []byte
		want  error // a wire.Code, or an io error
	}{
		{"length 0", append(le(0), 0, 0, 0, 0), wire.CodeBadFrame},
		{"length -1", append(le(-1), 0, 0, 0, 0), wire.CodeBadFrame},
		{"length 1000", append(le(1000), 0, 0, 0, 0), wire.CodeBadFrame},
		{"length 33", append(le(33), 0, 0, 0, 0), wire.CodeBadFrame},
		{"HTTP text", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wire.CodeBadFrame},
		{"big-endian after little-endian", append(Append(nil, binary.LittleEndian, "SUMA", 1, 2), Append(nil, binary.BigEndian, "SUMA", 1, 2)...), wire.CodeBadFrame},
		{"truncated header", []byte{4, 0, 0}, io.ErrUnexpectedEOF},
		{"truncated command", Append(nil, binary.LittleEndian, "SUMA", 1, 2)[:10], io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(bytes.NewReader(tt.input))
			var err error
			for err == nil {
				_, err = d.Decode()
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReplies(t *testing.T) {
	word := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	tests := []struct {
		method  string
		payload []byte
		want    string
	}{
		{"math.add", word(uint64(7)), "7\n"},
		{"math.sub", word(uint64(0xfffffffffffffff9)), "-7\n"},
		{"math.div", word(math.Float64bits(3.5)), "3.5\n"},
		{"math.div", word(math.Float64bits(-2)), "-2\n"},
		{"math.div", word(math.Float64bits(1.0 / 3)), "0.3333333333333333\n"},
		{"math.div", word(math.Float64bits(math.Copysign(0, -1))), "0\n"},
		{"math.div", word(math.Float64bits(1e21)), "1000000000000000000000\n"},
	}
	for _, tt := range tests {
		got, err := AppendReply(nil, tt.method, tt.payload)
		if err != nil || string(got) != tt.want {
			t.Errorf("AppendReply(%s, % x) = %q, %v; want %q", tt.method, tt.payload, got, err, tt.want)
		}
	}
	if got := string(AppendError(nil, wire.CodeDivisionByZero)); got != "ERROR DIVISION_BY_ZERO\n" {
		t.Errorf("AppendError = %q", got)
	}
	if v, err := ParseReply("3.5\n"); v != "3.5" || err != nil {
		t.Errorf("ParseReply = %q %v", v, err)
	}
	if _, err := ParseReply("ERROR OVERFLOW\n"); !errors.Is(err, wire.CodeOverflow) {
		t.Errorf("ParseReply error = %v", err)
	}
}

func TestCommands(t *testing.T) {
	want := map[string]string{"SUMA": "math.add", "RESTA": "math.sub", "MULTIPLICACION": "math.mul", "DIVISION": "math.div"}
	for cmd, method := range want {
		if m, ok := Method([]byte(cmd)); !ok || m != method {
			t.Errorf("Method(%s) = %s %v", cmd, m, ok)
		}
	}
	if _, ok := Method([]byte("suma")); ok {
		t.Error("commands are case-sensitive, as the seed sends them")
	}
}

// FuzzDecode: the decoder never panics, errors are BAD_FRAME or an end of
// stream, and every accepted packet re-encodes to its input bytes.
func FuzzDecode(f *testing.F) {
	for _, s := range [][]byte{
		Append(nil, binary.LittleEndian, "SUMA", 1, 2),
		Append(nil, binary.BigEndian, "DIVISION", -1, 0),
		append(Append(nil, binary.LittleEndian, "RESTA", 5, 5), Append(nil, binary.LittleEndian, "X", 0, 0)...),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0},
		{0, 0, 0, 0, 0, 0, 0, 0},
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeAll(t, NewDecoder(bytes.NewReader(data)), data)
	})
}

// decodeAll decodes data to its end: only protocol errors and ends of
// stream may stop it, every packet must re-encode to the bytes it came
// from, and wire.ErrWouldBlock (from a non-blocking source) is read past,
// but not forever.
func decodeAll(t *testing.T, d *Decoder, data []byte) {
	off, blocked := 0, 0
	for {
		p, err := d.Decode()
		if errors.Is(err, wire.ErrWouldBlock) {
			if blocked++; blocked > 2*len(data)+2 {
				t.Fatal("ErrWouldBlock again and again")
			}
			continue
		}
		if err != nil {
			if !errors.Is(err, wire.CodeBadFrame) && err != io.EOF && err != io.ErrUnexpectedEOF {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		enc := Append(nil, d.Order().(binary.AppendByteOrder), string(p.Command), p.A, p.B)
		if !bytes.Equal(enc, data[off:off+len(enc)]) {
			t.Fatalf("re-encoded % x, input % x", enc, data[off:off+len(enc)])
		}
		off += len(enc)
	}
}

// TestGoldenMatchesPython checks the golden file against Python's own
// struct.pack, the seed client's encoder.
func TestGoldenMatchesPython(t *testing.T) {
	out, err := exec.Command("python3", "testdata/seed_pack.py").Output()
	if err != nil {
		t.Fatalf("python3 testdata/seed_pack.py: %v (python3 is required: CI installs it)", err)
	}
	want, err := os.ReadFile("testdata/packets.golden")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != string(want) {
		t.Errorf("Python packs:\n%s\ngolden:\n%s", out, want)
	}
}

// FuzzDecodeWouldBlock: read in chunks cut anywhere, with
// wire.ErrWouldBlock between them (an event loop's reads), the decoder
// never panics, never keeps the would-block, returns only protocol errors
// and ends of stream, and every packet it returns re-encodes to the bytes
// it came from. (Whether a native HELLO is told apart depends on how much
// of it has arrived, on a goroutine too, so the packets are not compared
// with a reading at once.)
func FuzzDecodeWouldBlock(f *testing.F) {
	f.Add(append(Append(nil, binary.LittleEndian, "SUMA", 1, 2), Append(nil, binary.LittleEndian, "RESTA", 5, 5)...), []byte{2, 9})
	f.Add(Append(nil, binary.BigEndian, "DIVISION", -1, 0), []byte{0})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		decodeAll(t, NewDecoder(&chunked.Reader{Data: data, Cuts: cuts, Block: wire.ErrWouldBlock}), data)
	})
}

// Package legacy implements the struct-packed math protocol of the original
// Python client, and translates it to and from native method calls at the
// edge of the server.
//
// A request is exactly what Python's struct.pack("ihh", len(cmd), a, b) + cmd
// produces: an int32 command length (1..32), two int16 operands and the ASCII
// command. Python packs in the machine's byte order, so the first packet of a
// connection decides its order for its whole life: little-endian when the
// length read that way is in range, otherwise big-endian when that is.
//
// A reply is one ASCII line: the result in decimal ("-7\n", "3.5\n"), or
// "ERROR <CODE NAME>\n".
package legacy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/nexo-project/nexo/wire"
)

// HeaderLen is the size of the fixed part of a packet.
const HeaderLen = 8

// MaxCommandLen is the longest command a packet may carry.
const MaxCommandLen = 32

// Packet is one decoded request. Its layout on the wire is Python's "ihh":
// int32 length, int16 a, int16 b, no padding, then the command. Command aliases the decoder's buffer and
// is valid until the next Decode.
type Packet struct {
	Command []byte
	A, B    int16
}

// Decoder reads packets from a stream.
type Decoder struct {
	br    *bufio.Reader
	order binary.ByteOrder // nil until the first packet fixes it
}

// NewDecoder returns a Decoder reading from r.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{br: bufio.NewReaderSize(r, 512)}
}

// Order returns the connection's byte order, or nil before the first packet.
func (d *Decoder) Order() binary.ByteOrder { return d.order }

// Buffered returns how many unread bytes the decoder holds.
func (d *Decoder) Buffered() int { return d.br.Buffered() }

// Decode reads the next packet. A command length outside 1..32 returns a
// *wire.Error with code BAD_FRAME: the stream cannot be re-synchronised; a stream that ends between packets
// returns io.EOF, and one that ends inside a packet io.ErrUnexpectedEOF.
func (d *Decoder) Decode() (Packet, error) {
	h, err := d.br.Peek(HeaderLen)
	if err != nil {
		return Packet{}, eofError(err, len(h))
	}
	if d.order == nil {
		if d.nativeHello() {
			return Packet{}, ErrNativeHello
		}
		d.order = DetectOrder(h)
		if d.order == nil {
			return Packet{}, badLength(int32(binary.LittleEndian.Uint32(h)))
		}
	}
	n := int32(d.order.Uint32(h))
	if n < 1 || n > MaxCommandLen {
		return Packet{}, badLength(n)
	}
	b, err := d.br.Peek(HeaderLen + int(n))
	if err != nil {
		return Packet{}, eofError(err, len(b))
	}
	p := Packet{
		A:       int16(d.order.Uint16(b[4:])),
		B:       int16(d.order.Uint16(b[6:])),
		Command: b[HeaderLen:],
	}
	_, _ = d.br.Discard(len(b)) // the bytes are buffered: Discard cannot fail
	return p, nil
}

// ErrNativeHello is the error of a connection whose first bytes are a
// native protocol HELLO: a native client dialled the legacy door. Its
// length field reads as a big-endian legacy length, so it would wait
// forever for 4 bytes that never come; it is told where to go instead.
var ErrNativeHello = &wire.Error{Code: wire.CodeBadFrame,
	Msg: "this is the legacy door (struct-packed math packets); native clients connect to the native door (127.0.0.1:7070 by default)"}

// nativeHello reports whether the buffered start of the stream is a
// native HELLO frame: version 1, type HELLO, a JSON body. It looks only at
// what has arrived (a HELLO comes in one piece), never waits for more: a
// short legacy packet must not be held back.
func (d *Decoder) nativeHello() bool {
	b, _ := d.br.Peek(min(d.br.Buffered(), wire.HeaderLen+1))
	return len(b) == wire.HeaderLen+1 && b[4] == wire.Version && b[5] == byte(wire.TypeHello) && b[wire.HeaderLen] == '{'
}

// DetectOrder returns the byte order in which the first 4 bytes of a packet
// hold a length in 1..32, little-endian first, or nil when neither does.
func DetectOrder(h []byte) binary.ByteOrder {
	if n := int32(binary.LittleEndian.Uint32(h)); n >= 1 && n <= MaxCommandLen {
		return binary.LittleEndian
	}
	if n := int32(binary.BigEndian.Uint32(h)); n >= 1 && n <= MaxCommandLen {
		return binary.BigEndian
	}
	return nil
}

func badLength(n int32) error {
	return &wire.Error{Code: wire.CodeBadFrame, Msg: "legacy command length " + strconv.Itoa(int(n)) + " outside 1..32"}
}

func eofError(err error, got int) error {
	if errors.Is(err, io.EOF) && got > 0 {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Append appends a request packet in the given byte order. The command is
// sent as given; a length outside 1..32 makes a packet that servers reject,
// which tests use on purpose.
func Append(dst []byte, order binary.AppendByteOrder, command string, a, b int16) []byte {
	dst = order.AppendUint32(dst, uint32(int32(len(command))))
	dst = order.AppendUint16(dst, uint16(a))
	dst = order.AppendUint16(dst, uint16(b))
	return append(dst, command...)
}

// commands maps legacy commands to native methods.
var commands = map[string]string{
	"SUMA":           "math.add",
	"RESTA":          "math.sub",
	"MULTIPLICACION": "math.mul",
	"DIVISION":       "math.div",
}

// Method returns the native method a command runs.
func Method(command []byte) (string, bool) {
	m, ok := commands[string(command)]
	return m, ok
}

// AppendPayload appends the native payload for a packet: a and b as
// big-endian int64, as every math.* method takes them.
func AppendPayload(dst []byte, p Packet) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(int64(p.A)))
	return binary.BigEndian.AppendUint64(dst, uint64(int64(p.B)))
}

// AppendReply appends the reply line for a native response to method:
// an integer for add, sub and mul, the shortest decimal quotient for div.
func AppendReply(dst []byte, method string, payload []byte) ([]byte, error) {
	if len(payload) != 8 {
		return dst, errors.New("legacy: math response is not 8 bytes")
	}
	v := binary.BigEndian.Uint64(payload)
	if method == "math.div" {
		q := math.Float64frombits(v)
		if q == 0 {
			q = 0 // never print -0
		}
		dst = strconv.AppendFloat(dst, q, 'f', -1, 64)
	} else {
		dst = strconv.AppendInt(dst, int64(v), 10)
	}
	return append(dst, '\n'), nil
}

// AppendError appends an error reply line, such as "ERROR OVERFLOW\n".
func AppendError(dst []byte, code wire.Code) []byte {
	dst = append(dst, "ERROR "...)
	dst = append(dst, code.String()...)
	return append(dst, '\n')
}

// ParseReply decodes a reply line (with or without its newline): the result
// text, or a *wire.Error for an "ERROR <NAME>" line.
func ParseReply(line string) (string, error) {
	line = strings.TrimSuffix(line, "\n")
	if name, ok := strings.CutPrefix(line, "ERROR "); ok {
		code, _ := wire.ParseCode(name)
		return "", &wire.Error{Code: code, Msg: "legacy reply: " + name}
	}
	return line, nil
}

// Wait blocks until at least one byte of the next packet has arrived, or
// the stream ends (io.EOF between packets).
func (d *Decoder) Wait() error {
	_, err := d.br.Peek(1)
	return err
}

// HasPacket reports whether a whole packet is buffered, so that the next
// Decode will not block.
func (d *Decoder) HasPacket() bool {
	b, _ := d.br.Peek(d.br.Buffered()) // never blocks: asks only for what is buffered
	if len(b) < HeaderLen {
		return false
	}
	order := d.order
	if order == nil {
		if d.nativeHello() {
			return true // Decode will fail at once
		}
		order = DetectOrder(b)
		if order == nil {
			return true // Decode will fail at once without reading
		}
	}
	n := int32(order.Uint32(b))
	return n < 1 || n > MaxCommandLen || len(b) >= HeaderLen+int(n)
}

// Package proto is the little of nexo's native protocol that the event-loop
// spikes serve: HELLO, PING and REQUEST math.add, as bench/baseline does.
// Process works on whatever bytes a loop has read, as an event loop must:
// every complete frame is answered into one output buffer, and an
// incomplete one is left for the next read.
package proto

import (
	"encoding/binary"
	"strconv"
)

const (
	headerLen = 12
	maxFrame  = 1 << 20
)

// Conn is one connection's protocol state.
type Conn struct{ hello bool }

// Process answers the complete frames at the start of in, appending the
// answers to out. It returns how many bytes of in it consumed and whether
// the connection must close (a malformed frame).
func (c *Conn) Process(in, out []byte, id *uint64) (int, []byte, bool) {
	done := 0
	for len(in)-done >= headerLen {
		h := in[done:]
		n := int(binary.BigEndian.Uint32(h[:4]))
		if n < 8 || n > maxFrame {
			return done, out, true
		}
		if len(h) < 4+n {
			break
		}
		body := h[headerLen : 4+n]
		fid := binary.BigEndian.Uint32(h[8:12])
		switch h[5] {
		case 1: // HELLO
			*id++
			w := `{"client_id":` + strconv.FormatUint(*id, 10) + `,"server":"spike","heartbeat_ms":600000,"max_frame":1048576}`
			out = frame(out, 2, 0, []byte(w))
			c.hello = true
		case 6: // PING
			out = frame(out, 7, fid, body)
		case 3: // REQUEST
			out = add(out, fid, h[7]&1 != 0, body)
		}
		done += 4 + n
	}
	return done, out, false
}

func add(out []byte, id uint32, deadline bool, b []byte) []byte {
	if deadline && len(b) >= 4 {
		b = b[4:]
	}
	if len(b) < 1 || len(b) < 1+int(b[0]) || string(b[1:1+b[0]]) != "math.add" {
		return errFrame(out, id, 4, "only math.add")
	}
	p := b[1+b[0]:]
	if len(p) != 16 {
		return errFrame(out, id, 5, "want 16 bytes")
	}
	x, y := int64(binary.BigEndian.Uint64(p)), int64(binary.BigEndian.Uint64(p[8:]))
	s := x + y
	if (x >= 0) == (y >= 0) && (s >= 0) != (x >= 0) {
		return errFrame(out, id, 7, "overflow")
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(s))
	return frame(out, 4, id, v[:])
}

func errFrame(out []byte, id uint32, code uint16, msg string) []byte {
	b := binary.BigEndian.AppendUint16(nil, code)
	return frame(out, 5, id, append(b, msg...))
}

func frame(out []byte, t byte, id uint32, body []byte) []byte {
	out = binary.BigEndian.AppendUint32(out, uint32(8+len(body)))
	out = append(out, 1, t, 0, 0)
	out = binary.BigEndian.AppendUint32(out, id)
	return append(out, body...)
}

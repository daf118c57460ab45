package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// dripReader hands out data in chunks and records the largest buffer the
// Reader held against what it had been given.
type dripReader struct {
	data     []byte
	chunk    int
	given    int
	rd       *Reader
	worstBuf int // the largest len(rd.buf) seen while reading
	worstFor int // bytes given at that moment
}

func (d *dripReader) Read(p []byte) (int, error) {
	if l := len(d.rd.buf); l > initialReadBuf && (d.worstBuf == 0 || l*d.worstFor > d.worstBuf*d.given) {
		d.worstBuf, d.worstFor = l, d.given
	}
	if len(d.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), d.chunk)], d.data)
	d.data = d.data[n:]
	d.given += n
	return n, nil
}

// TestReaderGrowsWithData: a frame header that claims the max frame
// reserves nothing; the buffer grows as bytes arrive, to at most twice
// what was received (beyond the pooled size), and a whole large frame is
// still read.
func TestReaderGrowsWithData(t *testing.T) {
	const max = 1 << 20
	body := bytes.Repeat([]byte{'x'}, max-HeaderLen+4-1-len("m"))
	frame := AppendRequest(nil, 7, "m", body)
	if n := binary.BigEndian.Uint32(frame); n != max {
		t.Fatalf("frame length %d, want %d", n, max)
	}

	// Only the header and a few bytes arrive: nothing is reserved.
	d := &dripReader{data: frame[:32], chunk: 32}
	d.rd = NewReader(d, max)
	if _, err := d.rd.ReadFrame(); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated frame: %v", err)
	}
	if l := len(d.rd.buf); l > initialReadBuf {
		t.Errorf("after 32 bytes claiming %d, the buffer is %d bytes", max, l)
	}

	// The whole frame, in 1000-byte chunks.
	d = &dripReader{data: frame, chunk: 1000}
	d.rd = NewReader(d, max)
	f, err := d.rd.ReadFrame()
	if err != nil || f.ID != 7 || len(f.Body) != len(frame)-HeaderLen {
		t.Fatalf("big frame: %v, %d bytes", err, len(f.Body))
	}
	if d.worstBuf > 2*d.worstFor {
		t.Errorf("a buffer of %d bytes after %d received: more than twice", d.worstBuf, d.worstFor)
	}
}

// dribble gives one byte per Read, and ErrWouldBlock between them, as a
// non-blocking socket read by an event loop once per wake-up may.
type dribble struct {
	data  []byte
	ready bool
}

func (d *dribble) Read(p []byte) (int, error) {
	if !d.ready {
		d.ready = true
		return 0, ErrWouldBlock
	}
	d.ready = false
	if len(d.data) == 0 {
		return 0, io.EOF
	}
	p[0] = d.data[0]
	d.data = d.data[1:]
	return 1, nil
}

// TestReaderWouldBlock: ErrWouldBlock from the source is returned and not
// kept: frames cut anywhere come out whole once their bytes have come,
// and the end of the stream is still an EOF.
func TestReaderWouldBlock(t *testing.T) {
	var stream []byte
	for i := uint32(1); i <= 3; i++ {
		stream = AppendRequest(stream, i, "math.add", bytes.Repeat([]byte{byte(i)}, 200))
	}
	r := NewReader(&dribble{data: stream}, 0)
	var ids []uint32
	blocked := 0
	for {
		f, err := r.ReadFrame()
		if errors.Is(err, ErrWouldBlock) {
			if blocked++; blocked > 2*len(stream) {
				t.Fatalf("after %d frames, ErrWouldBlock again and again: it was kept", len(ids))
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d frames: %v", len(ids), err)
		}
		req, err := ParseRequest(f)
		if err != nil || len(req.Payload) != 200 || req.Payload[0] != byte(f.ID) {
			t.Fatalf("frame %d: %+v, %v", f.ID, req, err)
		}
		ids = append(ids, f.ID)
	}
	if len(ids) != 3 || blocked < len(stream) {
		t.Fatalf("frames %v, %d would-blocks for %d bytes", ids, blocked, len(stream))
	}
}

package wire

import (
	"bytes"
	"encoding/binary"
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

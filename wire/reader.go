package wire

import (
	"encoding/binary"
	"errors"
	"io"
	"strconv"
)

// initialReadBuf is the first size of a Reader's buffer. It grows to fit the
// largest frame seen, never past the max frame.
const initialReadBuf = 8 << 10

// Reader reads frames from a byte stream. It reads ahead into one buffer, so
// a burst of pipelined frames costs one read, and it never allocates more
// than the max frame because a peer claimed a large length.
type Reader struct {
	rd   io.Reader
	max  int
	buf  []byte
	r, w int // unread data is buf[r:w]
	err  error
}

// NewReader returns a Reader that accepts frames whose length field is at
// most maxFrame. maxFrame <= 0 means [DefaultMaxFrame].
func NewReader(rd io.Reader, maxFrame int) *Reader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &Reader{rd: rd, max: maxFrame}
}

// SetMaxFrame changes the largest frame length accepted from now on: a
// server reads the handshake with a small limit and raises it once the
// client is authenticated.
func (r *Reader) SetMaxFrame(maxFrame int) {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	r.max = maxFrame
}

// Buffered returns how many unread bytes the Reader holds.
func (r *Reader) Buffered() int { return r.w - r.r }

// HasFrame reports whether a whole frame is buffered, so that the next
// ReadFrame will not block.
func (r *Reader) HasFrame() bool {
	n := r.w - r.r
	if n < 4 {
		return false
	}
	return n >= 4+int(binary.BigEndian.Uint32(r.buf[r.r:]))
}

// fill reads until at least n bytes are unread. n is at most 4+r.max.
func (r *Reader) fill(n int) error {
	if r.w-r.r >= n {
		return nil
	}
	if r.buf == nil {
		r.buf = make([]byte, max(initialReadBuf, min(n, 4+r.max)))
	}
	if len(r.buf)-r.r < n {
		if len(r.buf) < n {
			// Grow to fit this frame; the size is bounded by the max frame.
			nb := make([]byte, min(max(n, 2*len(r.buf)), 4+r.max))
			r.w = copy(nb, r.buf[r.r:r.w])
			r.r = 0
			r.buf = nb
		} else {
			r.w = copy(r.buf, r.buf[r.r:r.w])
			r.r = 0
		}
	}
	for r.w-r.r < n {
		if r.err != nil {
			return r.err
		}
		m, err := r.rd.Read(r.buf[r.w:])
		r.w += m
		if err != nil {
			r.err = err
		}
	}
	return nil
}

// ReadFrame reads the next frame. The frame's Body is valid until the next
// call. A malformed frame returns an *Error whose Code is what the peer
// should be told before the connection closes (BAD_FRAME,
// UNSUPPORTED_VERSION or FRAME_TOO_LARGE). A stream that ends between frames
// returns io.EOF, and one that ends inside a frame io.ErrUnexpectedEOF.
func (r *Reader) ReadFrame() (Frame, error) {
	if err := r.fill(4); err != nil {
		return Frame{}, r.eofError(err)
	}
	length := binary.BigEndian.Uint32(r.buf[r.r:])
	if length < HeaderLen-4 {
		return Frame{}, newError(CodeBadFrame, "length "+strconv.FormatUint(uint64(length), 10)+" is below 8")
	}
	if uint64(length) > uint64(r.max) {
		return Frame{}, newError(CodeFrameTooLarge,
			"length "+strconv.FormatUint(uint64(length), 10)+" is over the limit of "+strconv.Itoa(r.max))
	}
	if err := r.fill(HeaderLen); err != nil {
		return Frame{}, r.eofError(err)
	}
	h := r.buf[r.r:]
	if h[4] != Version {
		return Frame{}, newError(CodeUnsupportedVersion, "version "+strconv.Itoa(int(h[4]))+", want 1")
	}
	f := Frame{
		Type:  Type(h[5]),
		Flags: Flags(binary.BigEndian.Uint16(h[6:])),
		ID:    binary.BigEndian.Uint32(h[8:]),
	}
	need := 4 + int(length)
	if err := r.fill(need); err != nil {
		return Frame{}, r.eofError(err)
	}
	f.Body = r.buf[r.r+HeaderLen : r.r+need : r.r+need]
	r.r += need
	if r.r == r.w {
		r.r, r.w = 0, 0
	}
	if err := f.validate(); err != nil {
		return Frame{}, err
	}
	return f, nil
}

// eofError turns an EOF inside a frame into io.ErrUnexpectedEOF.
func (r *Reader) eofError(err error) error {
	if errors.Is(err, io.EOF) && r.w > r.r {
		return io.ErrUnexpectedEOF
	}
	return err
}

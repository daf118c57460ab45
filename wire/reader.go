package wire

import (
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"sync"
)

// Buffer sizes of a Reader. A Reader waits for data in a small buffer of
// its own, made at its first read, so that an idle connection holds no
// large read buffer: a connection that sends small bursts (one request at
// a time, heartbeats) never needs more. A burst that fills the small
// buffer moves to a large buffer, taken from a pool; it goes back to the
// pool once a later burst fits the small buffer again, so a connection
// that turns idle gives it back within one heartbeat. A Reader whose
// source is a [Lender] reads in the lent buffer and needs one of its own
// only for a frame that a read cut in two.
const (
	smallReadBuf   = 128
	initialReadBuf = 8 << 10
)

// bigBufs recycles the large buffers of Readers (initialReadBuf bytes).
var bigBufs = sync.Pool{New: func() any { b := make([]byte, initialReadBuf); return &b }}

// ErrWouldBlock is what a non-blocking source returns when it has no more
// input for now. A Reader does not keep it: ReadFrame returns it with
// every byte read so far kept, and may be called again once more input
// has come (an event loop reads each connection that way).
var ErrWouldBlock = errors.New("wire: no more input for now")

// A Lender is a source that lends a Reader what it read instead of
// copying it into the Reader's buffer: an event loop reads all of its
// connections into one buffer of its own, and the frames are read where
// they arrived.
type Lender interface {
	// Lend reads what has arrived and returns it. The bytes stay the
	// Reader's until it calls Lend or Read again, or until the owner of
	// the source asks the Reader to Keep them. Lend returns nil and a nil
	// error when it cannot lend this time: the Reader then reads with
	// Read.
	Lend() ([]byte, error)
}

// Reader reads frames from a byte stream. It reads ahead, so a burst of
// pipelined frames costs one read. Its buffer grows with the bytes that
// arrive, never with the length a peer claims: a frame header that claims
// the max frame reserves nothing until its bytes come.
type Reader struct {
	rd     io.Reader
	lender Lender // rd, when it lends
	max    int
	buf    []byte // small, a pooled initialReadBuf buffer (big), a larger one, or a lent one
	big    *[]byte
	r, w   int // unread data is buf[r:w]
	burst  int // bytes read since the buffer was last empty
	err    error
	extra  Flags               // extension flags the handshake agreed to (AllowFlags)
	lent   bool                // buf is the Lender's
	small  *[smallReadBuf]byte // made at the first read into a buffer of the Reader's own
}

// NewReader returns a Reader that accepts frames whose length field is at
// most maxFrame. maxFrame <= 0 means [DefaultMaxFrame].
func NewReader(rd io.Reader, maxFrame int) *Reader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	r := &Reader{max: maxFrame}
	r.SetSource(rd)
	return r
}

// AllowFlags accepts the extension flags f (see [FlagTrace]) in the
// frames read from now on, as the handshake agreed.
func (r *Reader) AllowFlags(f Flags) { r.extra |= f }

// SetMaxFrame changes the largest frame length accepted from now on: a
// server reads the handshake with a small limit and raises it once the
// client is authenticated.
func (r *Reader) SetMaxFrame(maxFrame int) {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	r.max = maxFrame
}

// SetSource makes the Reader read from rd from now on, keeping what it
// has buffered: a server reads a handshake with blocking reads, then
// hands the connection to an event loop, whose source is non-blocking
// (see [ErrWouldBlock]).
func (r *Reader) SetSource(rd io.Reader) {
	r.Keep()
	r.rd = rd
	r.lender, _ = rd.(Lender)
}

// Keep makes the Reader hold in a buffer of its own what it holds of a
// lent one (see [Lender]): the source's owner is about to read into its
// buffer again while the Reader still has bytes of it it has not
// returned in a frame.
func (r *Reader) Keep() {
	if !r.lent {
		return
	}
	rest := r.buf[r.r:r.w]
	r.lent, r.r = false, 0
	switch {
	case len(rest) == 0:
		r.buf = r.waiting()
	case len(rest) <= smallReadBuf:
		r.buf = r.smallBuf()
	case len(rest) <= initialReadBuf:
		r.big = bigBufs.Get().(*[]byte)
		r.buf = *r.big
	default:
		r.buf = make([]byte, len(rest))
	}
	r.w = copy(r.buf, rest)
}

// smallBuf returns the Reader's small buffer, made on first need.
func (r *Reader) smallBuf() []byte {
	if r.small == nil {
		r.small = new([smallReadBuf]byte)
	}
	return r.small[:]
}

// waiting returns the Reader's small buffer if it has one, else nil (made
// at the next read): the buffer to wait for the next burst in.
func (r *Reader) waiting() []byte {
	if r.small == nil {
		return nil
	}
	return r.small[:]
}

// Buffered returns how many unread bytes the Reader holds.
func (r *Reader) Buffered() int { return r.w - r.r }

// Unread returns the bytes the Reader holds but has not returned in a
// frame, valid until the next call: after a malformed frame, what the
// peer sent instead (a client uses it to tell a wrong door).
func (r *Reader) Unread() []byte { return r.buf[r.r:r.w] }

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
	if r.w == r.r {
		// Empty: the last burst is over. Keep a large buffer only if that
		// burst needed one.
		if r.burst <= smallReadBuf || r.lent {
			r.dropBig()
		}
		r.r, r.w, r.burst = 0, 0, 0
		if r.lender != nil && r.err == nil {
			b, err := r.lender.Lend()
			if err != nil {
				if err != ErrWouldBlock { //nolint:errorlint // a sentinel the source returns as it is
					r.err = err
				}
				return err
			}
			if len(b) > 0 {
				r.dropBig()
				r.buf, r.w, r.burst, r.lent = b, len(b), len(b), true
				if r.w >= n {
					return nil
				}
			}
		}
	}
	// A frame cut in two by a read is completed in a buffer of the
	// Reader's own.
	r.Keep()
	if r.buf == nil {
		r.buf = r.smallBuf()
	}
	for r.w-r.r < n {
		if r.err != nil {
			return r.err
		}
		if r.w == len(r.buf) || (len(r.buf) == smallReadBuf && r.burst >= smallReadBuf) {
			r.grow(n)
		}
		m, err := r.rd.Read(r.buf[r.w:])
		r.w += m
		r.burst += m
		if err == ErrWouldBlock { //nolint:errorlint // a sentinel the source returns as it is
			return err
		}
		if err != nil {
			r.err = err
		}
	}
	return nil
}

// grow makes room to read more of the n bytes wanted: it compacts the
// buffer, or moves to one twice as large (the pooled size at least), never
// larger than n needs. It grows only once the buffer is full of bytes
// received, so a peer that claims a large frame costs memory as its bytes
// arrive, at most about twice what it sent, not what it claimed. A burst
// that filled the small buffer moves to the pooled buffer at once: more of
// it is likely waiting.
func (r *Reader) grow(n int) {
	size := len(r.buf)
	leaving := size == smallReadBuf && r.burst >= smallReadBuf
	if r.r > 0 && !leaving {
		r.w = copy(r.buf, r.buf[r.r:r.w])
		r.r = 0
		if r.w < size {
			return
		}
	}
	next := min(max(2*size, initialReadBuf), max(n, initialReadBuf), 4+r.max)
	if next <= size {
		r.w = copy(r.buf, r.buf[r.r:r.w]) // the max frame fits already: compacting makes room
		r.r = 0
		return
	}
	var nb []byte
	var big *[]byte
	if next == initialReadBuf {
		big = bigBufs.Get().(*[]byte)
		nb = *big
	} else {
		nb = make([]byte, next)
	}
	r.w = copy(nb, r.buf[r.r:r.w])
	r.r = 0
	r.dropBig()
	r.buf, r.big = nb, big
}

// dropBig gives up a large buffer: to the pool if it came from there. The
// Reader then uses its small buffer.
func (r *Reader) dropBig() {
	if r.big != nil {
		bigBufs.Put(r.big)
		r.big = nil
	}
	r.buf, r.lent = r.waiting(), false
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
	if err := f.validate(r.extra); err != nil {
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

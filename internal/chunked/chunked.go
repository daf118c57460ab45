// Package chunked is a test source that gives its bytes in chunks cut
// anywhere, with a "no more input for now" error between them, as a
// non-blocking socket read by an event loop once per wake-up does. The
// decoders' fuzz targets read through it.
package chunked

import "io"

// Reader gives Data in chunks of the sizes in Cuts (each plus one,
// cycled; one byte at a time when Cuts is empty), returning Block before
// each chunk, and io.EOF at the end.
type Reader struct {
	Data  []byte
	Cuts  []byte
	Block error // the decoder's would-block error (wire.ErrWouldBlock)

	i     int
	ready bool
}

// Read returns Block, then the next chunk, and so on.
func (c *Reader) Read(p []byte) (int, error) {
	if !c.ready {
		c.ready = true
		return 0, c.Block
	}
	c.ready = false
	if len(c.Data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(c.Cuts) > 0 {
		n = int(c.Cuts[c.i%len(c.Cuts)]) + 1
		c.i++
	}
	n = copy(p, c.Data[:min(n, len(c.Data))])
	c.Data = c.Data[n:]
	return n, nil
}

package loadgen

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// httpCodec is JSON-RPC 2.0 over POST /rpc: HTTP/1.1 on a kept-alive
// connection, the requests of a connection pipelined and answered in
// order. Each request is the same bytes but for its id.
type httpCodec struct {
	c    net.Conn
	br   *bufio.Reader
	head []byte // the request line and headers up to Content-Length's value
	body []byte // the JSON-RPC request up to its id
	mu   sync.Mutex
	fifo []int // guarded by mu: slots sent and not answered, oldest first
}

func newHTTPCodec(c net.Conn, host, method, params string) *httpCodec {
	body := `{"jsonrpc":"2.0","method":` + strconv.Quote(method)
	if params != "" {
		body += `,"params":` + params
	}
	body += `,"id":`
	head := "POST /rpc HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\nContent-Length: "
	return &httpCodec{c: c, br: bufio.NewReaderSize(c, 16<<10), head: []byte(head), body: []byte(body)}
}

func (h *httpCodec) request(out []byte, slot int) []byte {
	h.mu.Lock()
	h.fifo = append(h.fifo, slot)
	h.mu.Unlock()
	var id [20]byte
	idText := strconv.AppendInt(id[:0], int64(slot+1), 10)
	out = append(out, h.head...)
	out = strconv.AppendInt(out, int64(len(h.body)+len(idText)+1), 10)
	out = append(out, "\r\n\r\n"...)
	out = append(out, h.body...)
	out = append(out, idText...)
	return append(out, '}')
}

// answer reads one response: its status line, headers and body, sized
// by Content-Length or sent chunked. A status other than 200, or a
// JSON-RPC error, is a failed request.
func (h *httpCodec) answer(*[]byte) (int, bool, bool, error) {
	line, err := h.br.ReadSlice('\n')
	if err != nil {
		return -1, false, false, err
	}
	ok := bytes.HasPrefix(line, []byte("HTTP/1.1 200 "))
	length, chunked := -1, false
	for {
		line, err = h.br.ReadSlice('\n')
		if err != nil {
			return -1, false, false, err
		}
		if len(line) <= 2 { // the blank line
			break
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case !found:
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return -1, false, false, fmt.Errorf("http answer: Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		}
	}
	var start []byte // the body's first bytes, which say result or error
	switch {
	case chunked:
		if start, err = h.chunks(); err != nil {
			return -1, false, false, err
		}
	case length >= 0:
		if start, err = h.skip(length, nil); err != nil {
			return -1, false, false, err
		}
	default:
		return -1, false, false, fmt.Errorf("http answer with neither Content-Length nor chunks")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.fifo) == 0 {
		return -1, false, false, fmt.Errorf("http answer to no request")
	}
	slot := h.fifo[0]
	h.fifo = h.fifo[1:]
	return slot, !ok || isRPCError(start), false, nil
}

// startLen is how much of a body answer keeps to tell a result from an
// error.
const startLen = 64

// skip reads n bytes of body, keeping the first of them in start.
func (h *httpCodec) skip(n int, start []byte) ([]byte, error) {
	for n > 0 {
		b, err := h.br.Peek(min(n, h.br.Size()))
		if len(b) == 0 {
			return start, err
		}
		if len(start) < startLen {
			start = append(start, b[:min(len(b), startLen-len(start))]...)
		}
		_, _ = h.br.Discard(len(b))
		n -= len(b)
	}
	return start, nil
}

// chunks reads a chunked body: hexadecimal sizes, each chunk, and the
// trailer after the last, empty one.
func (h *httpCodec) chunks() ([]byte, error) {
	var start []byte
	for {
		line, err := h.br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		sizeText, _, _ := bytes.Cut(bytes.TrimSpace(line), []byte(";"))
		size, err := strconv.ParseUint(string(sizeText), 16, 31)
		if err != nil {
			return nil, fmt.Errorf("http answer: chunk size %q", sizeText)
		}
		if size == 0 {
			for { // the trailer, up to its blank line
				if line, err = h.br.ReadSlice('\n'); err != nil || len(line) <= 2 {
					return start, err
				}
			}
		}
		if start, err = h.skip(int(size)+2, start); err != nil { // the chunk and its CRLF
			return nil, err
		}
	}
}

// isRPCError reports whether a JSON-RPC response, from its first bytes,
// is an error: its "error" member comes before any "result".
func isRPCError(start []byte) bool {
	e := bytes.Index(start, []byte(`"error":`))
	r := bytes.Index(start, []byte(`"result":`))
	return e >= 0 && (r < 0 || e < r)
}

func (h *httpCodec) more() bool { return false }
func (h *httpCodec) write(out []byte) error {
	_, err := h.c.Write(out)
	return err
}
func (h *httpCodec) goodbye(out []byte) []byte { return out }
func (h *httpCodec) endReads(t time.Time)      { _ = h.c.SetReadDeadline(t) }
func (h *httpCodec) close()                    { _ = h.c.Close() }

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

// answer reads one response: its status line, headers and the body that
// Content-Length gives. A status other than 200, or a JSON-RPC error, is
// a failed request.
func (h *httpCodec) answer(*[]byte) (int, bool, bool, error) {
	line, err := h.br.ReadSlice('\n')
	if err != nil {
		return -1, false, false, err
	}
	ok := bytes.HasPrefix(line, []byte("HTTP/1.1 200 "))
	length := -1
	for {
		line, err = h.br.ReadSlice('\n')
		if err != nil {
			return -1, false, false, err
		}
		if len(line) <= 2 { // the blank line
			break
		}
		if name, value, found := bytes.Cut(line, []byte(":")); found && bytes.EqualFold(name, []byte("Content-Length")) {
			length, err = strconv.Atoi(string(bytes.TrimSpace(value)))
			if err != nil {
				return -1, false, false, fmt.Errorf("http answer: Content-Length %q", value)
			}
		}
	}
	if length < 0 {
		return -1, false, false, fmt.Errorf("http answer without Content-Length")
	}
	failed := !ok
	for length > 0 { // the body, looked at for an error as it is read
		n := min(length, h.br.Size())
		b, err := h.br.Peek(n)
		if err != nil {
			return -1, false, false, err
		}
		failed = failed || bytes.Contains(b, []byte(`"error"`))
		_, _ = h.br.Discard(n)
		length -= n
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.fifo) == 0 {
		return -1, false, false, fmt.Errorf("http answer to no request")
	}
	slot := h.fifo[0]
	h.fifo = h.fifo[1:]
	return slot, failed, false, nil
}

func (h *httpCodec) more() bool { return false }
func (h *httpCodec) write(out []byte) error {
	_, err := h.c.Write(out)
	return err
}
func (h *httpCodec) goodbye(out []byte) []byte { return out }
func (h *httpCodec) endReads(t time.Time)      { _ = h.c.SetReadDeadline(t) }
func (h *httpCodec) close()                    { _ = h.c.Close() }

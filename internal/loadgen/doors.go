package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/legacy"
	"github.com/nexo-project/nexo/internal/web"
	"github.com/nexo-project/nexo/wire"
)

// Doors the load generator can drive.
const (
	DoorNative = "native"
	DoorLegacy = "legacy"
	DoorWeb    = "web"  // JSON-RPC 2.0 over the WebSocket /ws
	DoorHTTP   = "http" // JSON-RPC 2.0 over POST /rpc, HTTP/1.1 kept alive
	// DoorRedis sends Redis PINGs (RESP) instead of the method: it drives
	// a redis-server with this same load generator, so that latencies of
	// nexo and Redis are measured by one client.
	DoorRedis = "redis"
)

// codec speaks one door's protocol for a connection of the load generator.
// The id of a request is its slot + 1.
type codec interface {
	// request appends the request of a slot to out.
	request(out []byte, slot int) []byte
	// answer reads the next message: an answer's slot and whether it is an
	// error, or slot -1 for anything else (a PING, whose PONG it appends to
	// out; bye says the server said GOODBYE).
	answer(out *[]byte) (slot int, failed, bye bool, err error)
	// more reports whether another message is buffered already.
	more() bool
	// write sends what request and answer appended.
	write(out []byte) error
	// goodbye appends the door's farewell, if it has one.
	goodbye(out []byte) []byte
	// endReads makes reads fail from t on, so a run can end.
	endReads(t time.Time)
	close()
}

// dialCodec connects connection i to the configured door.
func dialCodec(ctx context.Context, cfg Config, i int) (codec, error) {
	switch cfg.Door {
	case DoorLegacy:
		cmd, ok := legacyCommand(cfg.Method)
		if !ok {
			return nil, fmt.Errorf("the legacy door has only math.add, math.sub, math.mul and math.div, not %s", cfg.Method)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", cfg.Addr)
		if err != nil {
			return nil, err
		}
		a, b := legacyOperands(cfg.Payload)
		return newLineCodec(c, legacy.Append(nil, binary.LittleEndian, cmd, a, b), "ERROR"), nil
	case DoorRedis:
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", cfg.Addr)
		if err != nil {
			return nil, err
		}
		return newLineCodec(c, []byte("*1\r\n$4\r\nPING\r\n"), "-"), nil
	case DoorHTTP:
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", cfg.Addr)
		if err != nil {
			return nil, err
		}
		return newHTTPCodec(c, cfg.Addr, cfg.Method, jsonParams(cfg)), nil
	case DoorWeb:
		ws, err := web.Dial(ctx, cfg.Addr, "name=bench-"+strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		return &webCodec{ws: ws, method: cfg.Method, params: jsonParams(cfg)}, nil
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	_, rd, err := client.Handshake(ctx, c, &client.Options{Name: "bench-" + strconv.Itoa(i)})
	if err != nil {
		c.Close()
		return nil, err
	}
	return &nativeCodec{c: c, rd: rd, method: cfg.Method, payload: cfg.Payload}, nil
}

// nativeCodec is the binary protocol, pipelined by id.
type nativeCodec struct {
	c       net.Conn
	rd      *wire.Reader
	method  string
	payload []byte
}

func (n *nativeCodec) request(out []byte, slot int) []byte {
	return wire.AppendRequest(out, uint32(slot+1), n.method, n.payload)
}

func (n *nativeCodec) answer(out *[]byte) (int, bool, bool, error) {
	f, err := n.rd.ReadFrame()
	if err != nil {
		return -1, false, false, err
	}
	switch f.Type {
	case wire.TypeResponse, wire.TypeError:
		return int(f.ID) - 1, f.Type == wire.TypeError, false, nil
	case wire.TypePing:
		*out = wire.AppendFrame(*out, wire.TypePong, 0, f.ID, f.Body)
	case wire.TypeGoodbye:
		return -1, false, true, nil
	}
	return -1, false, false, nil
}

func (n *nativeCodec) more() bool { return n.rd.HasFrame() }
func (n *nativeCodec) write(out []byte) error {
	_, err := n.c.Write(out)
	return err
}
func (n *nativeCodec) goodbye(out []byte) []byte { return wire.AppendGoodbye(out, "bench done") }
func (n *nativeCodec) endReads(t time.Time)      { _ = n.c.SetReadDeadline(t) }
func (n *nativeCodec) close()                    { _ = n.c.Close() }

// lineCodec sends one fixed packet per request and reads answers that are
// lines, in order: the seed's struct packets on the legacy door, and RESP
// PINGs to Redis.
type lineCodec struct {
	c         net.Conn
	br        *bufio.Reader
	packet    []byte
	errPrefix []byte     // the start of an error line
	mu        sync.Mutex // a paced run sends and reads on two goroutines
	fifo      []int      // guarded by mu: slots sent and not answered, oldest first
}

func newLineCodec(c net.Conn, packet []byte, errPrefix string) *lineCodec {
	return &lineCodec{c: c, br: bufio.NewReaderSize(c, 16<<10), packet: packet, errPrefix: []byte(errPrefix)}
}

func (l *lineCodec) request(out []byte, slot int) []byte {
	l.mu.Lock()
	l.fifo = append(l.fifo, slot)
	l.mu.Unlock()
	return append(out, l.packet...)
}

func (l *lineCodec) answer(*[]byte) (int, bool, bool, error) {
	line, err := l.br.ReadSlice('\n')
	if err != nil {
		return -1, false, false, err
	}
	l.mu.Lock()
	if len(l.fifo) == 0 {
		l.mu.Unlock()
		return -1, false, false, fmt.Errorf("answer %q to no request", line)
	}
	slot := l.fifo[0]
	l.fifo = l.fifo[1:]
	l.mu.Unlock()
	return slot, bytes.HasPrefix(line, l.errPrefix), false, nil
}

func (l *lineCodec) more() bool { return bytes.IndexByte(peekAll(l.br), '\n') >= 0 }
func (l *lineCodec) write(out []byte) error {
	_, err := l.c.Write(out)
	return err
}
func (l *lineCodec) goodbye(out []byte) []byte { return out }
func (l *lineCodec) endReads(t time.Time)      { _ = l.c.SetReadDeadline(t) }
func (l *lineCodec) close()                    { _ = l.c.Close() }

func peekAll(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return b
}

// legacyCommand is the legacy command of a math method.
func legacyCommand(method string) (string, bool) {
	for _, cmd := range []string{"SUMA", "RESTA", "MULTIPLICACION", "DIVISION"} {
		if m, ok := legacy.Method([]byte(cmd)); ok && m == method {
			return cmd, true
		}
	}
	return "", false
}

// legacyOperands are the int16 operands of a math payload (1 and 2 unless
// the payload says otherwise and fits).
func legacyOperands(p []byte) (int16, int16) {
	if len(p) == 16 {
		a, b := int64(binary.BigEndian.Uint64(p)), int64(binary.BigEndian.Uint64(p[8:]))
		if a == int64(int16(a)) && b == int64(int16(b)) {
			return int16(a), int16(b)
		}
	}
	return 1, 2
}

// webCodec is JSON-RPC 2.0 over the WebSocket: one request per message.
type webCodec struct {
	ws     *web.Client
	method string
	params string
	bounds []int  // ends of the messages in the pending output
	msg    []byte // the last message read
}

func (w *webCodec) request(out []byte, slot int) []byte {
	out = append(out, `{"jsonrpc":"2.0","method":`...)
	out = strconv.AppendQuote(out, w.method)
	if w.params != "" {
		out = append(out, `,"params":`...)
		out = append(out, w.params...)
	}
	out = append(out, `,"id":`...)
	out = strconv.AppendInt(out, int64(slot+1), 10)
	out = append(out, '}')
	w.bounds = append(w.bounds, len(out))
	return out
}

func (w *webCodec) answer(*[]byte) (int, bool, bool, error) {
	msg, err := w.ws.ReadAppend(w.msg[:0])
	w.msg = msg
	if err != nil {
		return -1, false, false, err
	}
	if id, failed, ok := plainAnswer(msg); ok {
		return id - 1, failed, false, nil
	}
	var m struct {
		ID     *int            `json:"id"`
		Error  json.RawMessage `json:"error"`
		Method string          `json:"method"`
	}
	if err := json.Unmarshal(msg, &m); err != nil {
		return -1, false, false, fmt.Errorf("web answer %q: %w", msg, err)
	}
	if m.ID == nil {
		return -1, false, m.Method == "event.goodbye", nil
	}
	return *m.ID - 1, m.Error != nil, false, nil
}

func (w *webCodec) more() bool { return false }

// write sends each request as its own text message.
func (w *webCodec) write(out []byte) error {
	start := 0
	for _, end := range w.bounds {
		if end > len(out) {
			break
		}
		if err := w.ws.Write(context.Background(), out[start:end]); err != nil {
			return err
		}
		start = end
	}
	w.bounds = w.bounds[:0]
	return nil
}

func (w *webCodec) goodbye(out []byte) []byte { return out }
func (w *webCodec) endReads(t time.Time) {
	time.AfterFunc(time.Until(t), func() { _ = w.ws.CloseNow() })
}
func (w *webCodec) close() { _ = w.ws.Close("bench done") }

// plainAnswer reads an answer in the form nexo writes one, without
// encoding/json: {"jsonrpc":"2.0","result":…,"id":N} or with "error",
// N a positive integer. ok is false for any other message, which the
// caller then decodes.
func plainAnswer(msg []byte) (id int, failed, ok bool) {
	switch {
	case bytes.HasPrefix(msg, []byte(`{"jsonrpc":"2.0","result":`)):
	case bytes.HasPrefix(msg, []byte(`{"jsonrpc":"2.0","error":`)):
		failed = true
	default:
		return 0, false, false
	}
	if len(msg) < 2 || msg[len(msg)-1] != '}' {
		return 0, false, false
	}
	body := msg[:len(msg)-1]
	i := bytes.LastIndex(body, []byte(`,"id":`))
	if i < 0 {
		return 0, false, false
	}
	id, err := strconv.Atoi(string(body[i+len(`,"id":`):]))
	return id, failed, err == nil && id > 0
}

// jsonParams are the JSON-RPC params of the configured payload: Params
// when set, [a, b] for math methods, none otherwise.
func jsonParams(cfg Config) string {
	if cfg.Params != "" {
		return cfg.Params
	}
	if len(cfg.Payload) == 16 {
		a, b := int64(binary.BigEndian.Uint64(cfg.Payload)), int64(binary.BigEndian.Uint64(cfg.Payload[8:]))
		return "[" + strconv.FormatInt(a, 10) + "," + strconv.FormatInt(b, 10) + "]"
	}
	return ""
}

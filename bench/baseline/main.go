// Command baseline is a deliberately minimal server for the native protocol
// that implements only math.add: a goroutine per connection, a buffered
// reader, and one write per burst of requests. It has no sessions, no
// heartbeats, no limits, no metrics: it is the Go "limit" that bench/compare.sh
// measures nexo against. It is not a server to deploy.
//
// With -http-addr it also serves math.add as JSON-RPC 2.0 over POST /rpc,
// the way a minimal net/http server would (encoding/json, one handler):
// the yardstick of nexo's web door (bench/web.sh).
//
//	go run ./bench/baseline -addr 127.0.0.1:7490 -http-addr 127.0.0.1:7491
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
)

const (
	headerLen  = 12
	typeHello  = 1
	typeWelc   = 2
	typeReq    = 3
	typeResp   = 4
	typeErr    = 5
	typePing   = 6
	typePong   = 7
	maxFrame   = 1 << 20
	codeOverfl = 7
	codeBadPay = 5
	codeUnkn   = 4
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7490", "listen `address`")
	httpAddr := flag.String("http-addr", "", "also serve JSON-RPC over POST /rpc on this `address`")
	flag.Parse()
	if *httpAddr != "" {
		hln, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Fprintln(os.Stderr, "baseline serving POST /rpc on", hln.Addr())
		go func() { log.Fatal(http.Serve(hln, http.HandlerFunc(rpc))) }()
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintln(os.Stderr, "baseline listening on", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(c)
	}
}

// serve answers one connection: HELLO, then math.add until EOF.
func serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	var out []byte
	body := make([]byte, 0, 256)
	for id := uint64(1); ; {
		var h [headerLen]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(h[:4])
		if n < 8 || n > maxFrame {
			return
		}
		body = body[:n-8]
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		fid := binary.BigEndian.Uint32(h[8:])
		switch h[5] {
		case typeHello:
			w := fmt.Sprintf(`{"client_id":%d,"server":"baseline","heartbeat_ms":600000,"max_frame":%d}`, id, maxFrame)
			out = frame(out, typeWelc, 0, []byte(w))
			id++
		case typePing:
			out = frame(out, typePong, fid, body)
		case typeReq:
			out = add(out, fid, h[7]&1 != 0, body)
		}
		if r.Buffered() < headerLen { // the burst is over: one write for all of it
			if _, err := c.Write(out); err != nil {
				return
			}
			out = out[:0]
		}
	}
}

// add answers a REQUEST for math.add.
func add(out []byte, id uint32, deadline bool, b []byte) []byte {
	if deadline && len(b) >= 4 {
		b = b[4:]
	}
	if len(b) < 1 || len(b) < 1+int(b[0]) || string(b[1:1+b[0]]) != "math.add" {
		return errFrame(out, id, codeUnkn, "only math.add")
	}
	p := b[1+b[0]:]
	if len(p) != 16 {
		return errFrame(out, id, codeBadPay, "want 16 bytes")
	}
	x, y := int64(binary.BigEndian.Uint64(p)), int64(binary.BigEndian.Uint64(p[8:]))
	s := x + y
	if (x >= 0) == (y >= 0) && (s >= 0) != (x >= 0) {
		return errFrame(out, id, codeOverfl, "overflow")
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(s))
	return frame(out, typeResp, id, v[:])
}

func errFrame(out []byte, id uint32, code uint16, msg string) []byte {
	b := binary.BigEndian.AppendUint16(nil, code)
	return frame(out, typeErr, id, append(b, msg...))
}

func frame(out []byte, t byte, id uint32, body []byte) []byte {
	out = binary.BigEndian.AppendUint32(out, uint32(8+len(body)))
	out = append(out, 1, t, 0, 0)
	out = binary.BigEndian.AppendUint32(out, id)
	return append(out, body...)
}

// rpc answers one JSON-RPC 2.0 request for math.add, POSTed to /rpc.
func rpc(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/rpc" {
		http.Error(w, "POST /rpc", http.StatusNotFound)
		return
	}
	var req struct {
		Method string          `json:"method"`
		Params [2]int64        `json:"params"`
		ID     json.RawMessage `json:"id"`
	}
	type rpcError struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	resp := struct {
		JSONRPC string          `json:"jsonrpc"`
		Result  *int64          `json:"result,omitempty"`
		Error   *rpcError       `json:"error,omitempty"`
		ID      json.RawMessage `json:"id"`
	}{JSONRPC: "2.0"}
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req)
	resp.ID = req.ID
	x, y := req.Params[0], req.Params[1]
	s := x + y
	switch {
	case err != nil:
		resp.Error = &rpcError{-32700, err.Error()}
	case req.Method != "math.add":
		resp.Error = &rpcError{-32601, "only math.add"}
	case (x >= 0) == (y >= 0) && (s >= 0) != (x >= 0):
		resp.Error = &rpcError{-32007, "overflow"}
	default:
		resp.Result = &s
	}
	if resp.ID == nil {
		resp.ID = json.RawMessage("null")
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// Command fasthttp is issue 17's web-door spike: math.add as JSON-RPC 2.0
// over POST /rpc, as bench/baseline serves it with net/http, but on
// github.com/valyala/fasthttp, with the same encoding/json decoding and
// the same answers. It measures what a leaner HTTP/1.1 server than
// net/http would give the web door (docs/performance.md, "The web door
// beside a minimal net/http server"):
//
//	go run ./fasthttp -addr 127.0.0.1:7391
//	nexo bench --door http --addr 127.0.0.1:7391 -c 50 -p 1 -d 10s
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"log"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7391", "serve POST /rpc on this `address`")
	flag.Parse()
	s := &fasthttp.Server{
		Handler: rpc,
		// The timeouts nexo's web door keeps, so that the comparison with
		// it is fair: headers and body, the answer, an idle connection.
		ReadTimeout:        30 * time.Second,
		WriteTimeout:       60 * time.Second,
		IdleTimeout:        15 * time.Second,
		MaxRequestBodySize: 1 << 20,
	}
	log.Fatal(s.ListenAndServe(*addr))
}

// rpc answers one JSON-RPC 2.0 request for math.add, as bench/baseline's.
func rpc(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() || string(ctx.Path()) != "/rpc" {
		ctx.Error("POST /rpc", fasthttp.StatusNotFound)
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
	err := json.NewDecoder(bytes.NewReader(ctx.PostBody())).Decode(&req) // as the baseline decodes
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
	ctx.SetContentType("application/json")
	_ = json.NewEncoder(ctx).Encode(resp)
}

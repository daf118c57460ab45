package web

import (
	"bytes"
	"context"

	"github.com/coder/websocket"
)

// Client is a connection to the WebSocket door as a browser makes it: one
// JSON-RPC message per text message. Tools that drive the door (the load
// generator) use it, so that the WebSocket transport stays in this
// package.
type Client struct{ ws *websocket.Conn }

// Dial opens a WebSocket to the door at addr ("host:port"); query, when
// not empty, is the URL's query ("name=bench-1").
func Dial(ctx context.Context, addr, query string) (*Client, error) {
	url := "ws://" + addr + "/ws"
	if query != "" {
		url += "?" + query
	}
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(16 << 20)
	return &Client{ws: ws}, nil
}

// ReadAppend appends the next message to dst, without waiting on a
// context: CloseNow ends it.
func (c *Client) ReadAppend(dst []byte) ([]byte, error) {
	_, r, err := c.ws.Reader(context.Background())
	if err != nil {
		return dst, err
	}
	b := bytes.NewBuffer(dst) // grows in dst's room
	_, err = b.ReadFrom(r)
	return b.Bytes(), err
}

// CloseNow closes the connection at once, without the closing handshake.
func (c *Client) CloseNow() error { return c.ws.CloseNow() }

// Write sends one message.
func (c *Client) Write(ctx context.Context, msg []byte) error {
	return c.ws.Write(ctx, websocket.MessageText, msg)
}

// Close closes the connection normally, with a reason.
func (c *Client) Close(reason string) error {
	return c.ws.Close(websocket.StatusNormalClosure, reason)
}

package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"

	"github.com/nexo-project/nexo/internal/service"
)

// Methods returns the server's own methods, which act on sessions:
//
//   - sys.subscribe ["stats", "clients"]: events of those topics follow, as
//     EVENT frames (native) or event.<topic> notifications (ws). The
//     clients topic sends the current list at once.
//   - sys.stats: the totals and the samples of the last minutes (JSON).
//   - sys.kick [id, "reason"]: admins only; the client gets GOODBYE.
//
// Payloads are JSON on every door.
func (s *Server) Methods() []service.Method {
	return []service.Method{
		{
			Name: "sys.subscribe", Summary: `subscribe this connection to events: ["stats","clients"] (JSON)`,
			Idempotent: true, JSON: jsonPayload, Handler: s.subscribe,
		},
		{
			Name: "sys.stats", Summary: "server totals and the last minutes of requests/s and p99 (JSON)",
			Idempotent: true, JSON: jsonPayload,
			Handler: func(_ context.Context, _ service.Request, dst []byte) ([]byte, error) {
				b, err := json.Marshal(struct {
					Stats
					History []Sample `json:"history"`
				}{s.Stats(), s.History()})
				return append(dst, b...), err
			},
		},
		{
			Name: "sys.kick", Summary: `disconnect a client: [id, "reason"]; admins only`,
			Hidden: true, JSON: jsonPayload, Handler: s.kickMethod,
		},
	}
}

func (s *Server) subscribe(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
	var ts []string
	if err := json.Unmarshal(req.Payload, &ts); err != nil || len(ts) == 0 {
		return dst, fmt.Errorf("%w: want a JSON array of topics, such as [\"stats\",\"clients\"]", service.ErrBadPayload)
	}
	sess := s.table.get(req.Caller.ID)
	if sess == nil || (sess.door != DoorNative && sess.door != DoorWS) {
		return dst, fmt.Errorf("%w: events need a native or WebSocket connection", service.ErrBadPayload)
	}
	if !s.hub.subscribe(sess, ts) {
		return dst, fmt.Errorf("%w: topics are %q", service.ErrBadPayload, topics)
	}
	for _, t := range ts {
		if t == TopicClients {
			ev := s.clientsEvent()
			if !sess.caller.Admin {
				ev = ev.redact()
			}
			if b, err := json.Marshal(ev); err == nil {
				sess.sendEvent(TopicClients, b)
			}
		}
	}
	b, err := json.Marshal(ts)
	return append(dst, b...), err
}

func (s *Server) kickMethod(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
	if !req.Caller.Trusted() {
		return dst, service.ErrNotPermitted
	}
	var p []json.RawMessage
	var id float64
	var reason string
	if json.Unmarshal(req.Payload, &p) != nil || len(p) < 1 || len(p) > 2 || json.Unmarshal(p[0], &id) != nil ||
		id < 1 || id != math.Trunc(id) || id > 1<<53 || (len(p) == 2 && json.Unmarshal(p[1], &reason) != nil) {
		return dst, fmt.Errorf("%w: want [id, \"reason\"]", service.ErrBadPayload)
	}
	if reason == "" {
		reason = "by admin " + req.Caller.Remote
	}
	ok := s.Kick(uint64(id), reason)
	return fmt.Appendf(dst, "%t", ok), nil
}

// jsonPayload is the codec of methods whose payload is JSON on every door:
// params pass through, results too.
var jsonPayload = &service.JSONCodec{
	Params: func(params, dst []byte) ([]byte, error) {
		p := bytes.TrimSpace(params)
		if len(p) == 0 {
			p = []byte("null")
		}
		return append(dst, p...), nil
	},
	Result: func(payload, dst []byte) ([]byte, error) { return append(dst, payload...), nil },
}

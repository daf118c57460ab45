package server

import (
	"context"
	"net"
	"time"

	"github.com/nexo-project/nexo/internal/legacy"
	"github.com/nexo-project/nexo/internal/service"
	"github.com/nexo-project/nexo/wire"
)

// handleLegacy runs one legacy connection. There is no handshake: the
// client is registered as soon as it connects.
func (s *Server) handleLegacy(c net.Conn) {
	defer s.leave(remoteIP(c.RemoteAddr()))
	sess := s.newSession(c, DoorLegacy, "")
	s.register(sess)
	sess.end(sess.readLegacy(legacy.NewDecoder(c)))
}

// readLegacy is the legacy session's reader. Packets are answered in order
// on this goroutine (the math handlers are inline), and the replies of a
// burst are written together.
func (s *session) readLegacy(dec *legacy.Decoder) error {
	busy := false
	defer func() {
		if busy {
			s.release()
		}
	}()
	var payload [16]byte
	var resp [16]byte
	for {
		p, err := dec.Decode()
		if err != nil {
			return s.readFailed(err)
		}
		if !busy {
			busy = true
			s.acquire()
			s.lastSeen.Store(time.Now().UnixNano())
		}
		s.bytesIn.Add(uint64(legacy.HeaderLen + len(p.Command)))
		s.requests.Add(1)
		start := time.Now()
		method, ok := legacy.Method(p.Command)
		var m *service.Method
		if ok {
			m = s.srv.reg.Get(method)
		}
		var code wire.Code
		var out []byte
		var failed error
		switch {
		case s.draining.Load():
			code = wire.CodeShuttingDown
		case m == nil:
			code = wire.CodeUnknownMethod
		default:
			ctx, cancel := s.ctx, context.CancelFunc(nil)
			if m.Async != nil {
				// Served by a worker: the legacy protocol has no request ids,
				// so answers must keep their order and the reader waits.
				ctx, cancel = context.WithTimeout(s.ctx, s.srv.cfg.RequestTimeout)
			}
			out, failed = m.Call(ctx, service.Request{Payload: legacy.AppendPayload(payload[:0], p), Caller: &s.caller}, resp[:0])
			if cancel != nil {
				cancel()
			}
		}
		// The writer is locked only now, after the call, so that heartbeats
		// and other writers never wait for a handler.
		b := s.out.Begin()
		if code == 0 && failed == nil {
			b, failed = legacy.AppendReply(b, method, out)
		}
		if failed != nil {
			code = service.CodeOf(failed)
		}
		if code != 0 {
			b = legacy.AppendError(b, code)
			s.errors.Add(1)
		}
		_ = s.out.Commit(b)
		s.srv.metrics.observe(s.shard(), m, code, time.Since(start))
		if failed != nil {
			s.logHandlerError(method, service.CodeOf(failed), failed)
		}
		if !dec.HasPacket() {
			s.lastSeen.Store(time.Now().UnixNano())
			_ = s.out.Flush()
			busy = false
			s.release()
		}
	}
}

package server

import (
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
		var failed error // logged once the writer is unlocked
		b := s.out.Begin()
		method, ok := legacy.Method(p.Command)
		var m *service.Method
		if ok {
			m = s.srv.reg.Get(method)
		}
		var code wire.Code
		switch {
		case s.draining.Load():
			code = wire.CodeShuttingDown
			b = legacy.AppendError(b, code)
			s.errors.Add(1)
		case m == nil:
			code = wire.CodeUnknownMethod
			b = legacy.AppendError(b, code)
			s.errors.Add(1)
		default:
			out, err := m.Call(s.ctx, service.Request{Payload: legacy.AppendPayload(payload[:0], p), Caller: &s.caller}, resp[:0])
			if err == nil {
				b, err = legacy.AppendReply(b, method, out)
			}
			if err != nil {
				code = service.CodeOf(err)
				b = legacy.AppendError(b, code)
				s.errors.Add(1)
				failed = err
			}
		}
		_ = s.out.Commit(b)
		s.srv.metrics.observe(m, code, start)
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

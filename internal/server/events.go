package server

import (
	"encoding/json"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/nexo-project/nexo/wire"
)

// Event topics a client can subscribe to with sys.subscribe.
const (
	// TopicStats carries a Sample every second.
	TopicStats = "stats"
	// TopicClients carries a ClientsEvent when clients come and go, and at
	// most once a second while their counters change.
	TopicClients = "clients"
)

var topics = []string{TopicStats, TopicClients}

// Sample is one second of server activity, as published on TopicStats and
// kept for the last few minutes (History).
type Sample struct {
	Time     time.Time      `json:"t"`
	Requests float64        `json:"rps"`    // requests answered per second
	P99      float64        `json:"p99_us"` // 99th percentile latency, microseconds (bucket estimate)
	Clients  int            `json:"clients"`
	Doors    map[string]int `json:"doors"` // connected clients by door
}

// ClientsEvent is the payload of TopicClients: the current list (at most
// MaxEventClients rows, newest clients first), the total, and the recently
// closed sessions. Remote addresses and identities are only sent to admins.
type ClientsEvent struct {
	Total   int            `json:"total"`
	Doors   map[string]int `json:"doors"`
	Clients []ClientInfo   `json:"clients"`
	Closed  []ClosedInfo   `json:"closed"`
}

// MaxEventClients bounds the rows of a ClientsEvent; the admin API pages
// through all of them.
const MaxEventClients = 500

// historyLen is how many one-second samples History keeps (5 minutes).
const historyLen = 300

// hub keeps the event subscriptions and the recent samples.
type hub struct {
	mu      sync.Mutex
	subs    map[string]map[*session]struct{} // guarded by mu: topic -> subscribers
	history []Sample                         // guarded by mu: oldest first, at most historyLen
	dirty   bool                             // guarded by mu: the client list changed since the last event
	kick    chan struct{}                    // wakes the publisher early when the list changes
}

func newHub() *hub {
	h := &hub{subs: make(map[string]map[*session]struct{}), kick: make(chan struct{}, 1)}
	for _, t := range topics {
		h.subs[t] = make(map[*session]struct{})
	}
	return h
}

// subscribe adds s to the topics; it returns false for an unknown topic.
func (h *hub) subscribe(s *session, ts []string) bool {
	for _, t := range ts {
		if !slices.Contains(topics, t) {
			return false
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range ts {
		h.subs[t][s] = struct{}{}
	}
	return true
}

// forget removes a closed session from every topic.
func (h *hub) forget(s *session) {
	h.mu.Lock()
	for _, m := range h.subs {
		delete(m, s)
	}
	h.mu.Unlock()
}

// subscribers returns the sessions subscribed to topic.
func (h *hub) subscribers(topic string) []*session {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*session, 0, len(h.subs[topic]))
	for s := range h.subs[topic] {
		out = append(out, s)
	}
	return out
}

// changed notes that a client came or went, so the next clients event
// goes out soon.
func (h *hub) changed() {
	h.mu.Lock()
	h.dirty = true
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// History returns the samples of the last minutes, oldest first.
func (s *Server) History() []Sample {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return slices.Clone(s.hub.history)
}

// publishLoop samples the server every second, publishes TopicStats, and
// publishes TopicClients after changes (at most every 200ms) and every
// second while anyone listens.
func (s *Server) publishLoop() {
	defer close(s.pubDone)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var (
		lastReq   = s.metrics.requests()
		lastTime  = time.Now()
		lastBkt   = s.metrics.bucketCounts(nil)
		bkt       []uint64
		lastClist time.Time
	)
	for {
		select {
		case <-s.hbStop:
			return
		case <-s.hub.kick:
			if time.Since(lastClist) >= 200*time.Millisecond {
				s.publishClients()
				lastClist = time.Now()
			}
		case now := <-tick.C:
			req := s.metrics.requests()
			bkt = s.metrics.bucketCounts(bkt[:0])
			dt := now.Sub(lastTime).Seconds()
			sm := Sample{Time: now.Truncate(time.Millisecond), Doors: make(map[string]int)}
			if dt > 0 {
				sm.Requests = math.Round(float64(req-lastReq) / dt)
			}
			sm.P99 = p99(lastBkt, bkt)
			for _, sess := range s.table.appendLive(nil) {
				sm.Doors[sess.door]++
				sm.Clients++
			}
			lastReq, lastTime = req, now
			lastBkt, bkt = bkt, lastBkt
			s.hub.mu.Lock()
			if len(s.hub.history) == historyLen {
				copy(s.hub.history, s.hub.history[1:])
				s.hub.history = s.hub.history[:historyLen-1]
			}
			s.hub.history = append(s.hub.history, sm)
			s.hub.mu.Unlock()
			if b, err := json.Marshal(sm); err == nil {
				for _, sess := range s.hub.subscribers(TopicStats) {
					sess.sendEvent(TopicStats, b)
				}
			}
			s.publishClients()
			lastClist = now
		}
	}
}

// publishClients sends the client list to its subscribers: admins get
// remote addresses, others do not.
func (s *Server) publishClients() {
	subs := s.hub.subscribers(TopicClients)
	if len(subs) == 0 {
		return
	}
	ev := s.clientsEvent()
	full, err := json.Marshal(ev)
	if err != nil {
		return
	}
	var redacted []byte
	for _, sess := range subs {
		if sess.caller.Admin {
			sess.sendEvent(TopicClients, full)
			continue
		}
		if redacted == nil {
			redacted, _ = json.Marshal(ev.redact()) // marshals whenever full did
		}
		sess.sendEvent(TopicClients, redacted)
	}
}

func (s *Server) clientsEvent() ClientsEvent {
	snap := s.table.snapshot()
	ev := ClientsEvent{Total: len(snap.Clients), Doors: make(map[string]int), Closed: snap.Closed}
	for _, c := range snap.Clients {
		ev.Doors[c.Door]++
	}
	slices.Reverse(snap.Clients) // newest first
	ev.Clients = snap.Clients[:min(len(snap.Clients), MaxEventClients)]
	if len(ev.Closed) > 50 {
		ev.Closed = ev.Closed[:50]
	}
	return ev
}

// redact returns a copy without remote addresses and certificate
// identities, for clients that are not admins.
func (ev ClientsEvent) redact() ClientsEvent {
	out := ev
	out.Clients = slices.Clone(ev.Clients)
	for i := range out.Clients {
		out.Clients[i].Remote, out.Clients[i].Identity = "", ""
	}
	out.Closed = slices.Clone(ev.Closed)
	for i := range out.Closed {
		out.Closed[i].Remote, out.Closed[i].Identity = "", ""
	}
	return out
}

// p99 estimates the 99th percentile, in microseconds, of the requests
// counted between two snapshots taken by bucketCounts (cumulative bucket
// counts, then the total): the bucket holding it, interpolated linearly.
// Past the last bucket it reports the last bound.
func p99(before, after []uint64) float64 {
	n := len(durationBuckets)
	if len(before) != n+1 || len(after) != n+1 {
		return 0
	}
	total := after[n] - before[n]
	if total == 0 {
		return 0
	}
	rank := math.Ceil(0.99 * float64(total))
	var prevCount uint64
	prevBound := 0.0
	for i, ub := range durationBuckets {
		c := after[i] - before[i]
		if float64(c) >= rank {
			frac := (rank - float64(prevCount)) / float64(c-prevCount) // c > prevCount: rank was above prevCount
			return math.Round((prevBound + frac*(ub-prevBound)) * 1e6)
		}
		prevCount, prevBound = c, ub
	}
	return math.Round(durationBuckets[n-1] * 1e6)
}

// sendEvent queues an EVENT (native) or a JSON-RPC notification (ws).
// Other doors have no events.
func (s *session) sendEvent(topic string, payload []byte) {
	var err error
	switch s.door {
	case DoorNative:
		err = s.out.Commit(wire.AppendEvent(s.out.Begin(), topic, payload))
	case DoorWS:
		err = s.out.Commit(appendNotification(s.out.Begin(), "event."+topic, payload))
	default:
		return
	}
	if err == nil {
		s.out.FlushAsync()
	}
}

// appendNotification appends a JSON-RPC notification and the newline that
// ends every message in a WebSocket session's output.
func appendNotification(b []byte, method string, params []byte) []byte {
	b = append(b, `{"jsonrpc":"2.0","method":"`...)
	b = append(b, method...) // topics are plain ASCII names
	b = append(b, `","params":`...)
	b = append(b, params...)
	return append(b, "}\n"...)
}

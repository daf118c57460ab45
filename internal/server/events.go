package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexo-project/nexo/internal/status"
)

// Event topics a client can subscribe to with sys.subscribe.
const (
	// TopicStats carries a status.Sample every second.
	TopicStats = "stats"
	// TopicClients carries a status.ClientsEvent when clients come and go
	// (within clientsEvery of the change), and every second while anyone
	// listens.
	TopicClients = "clients"
)

// Topics lists the event topics.
var Topics = []string{TopicStats, TopicClients}

// clientsEvery is the least time between two publications of the client
// list after changes.
const clientsEvery = 200 * time.Millisecond

// historyLen is how many one-second samples History keeps (5 minutes).
const historyLen = 300

// hub keeps the event subscriptions, the watchers of the monitor stream
// and the recent samples.
type hub struct {
	mu      sync.Mutex
	subs    map[string]map[*session]struct{} // guarded by mu: topic -> subscribers
	history []status.Sample                  // guarded by mu: oldest first, at most historyLen
	dirty   bool                             // guarded by mu: the client list changed since the last publication
	kick    chan struct{}                    // wakes the publisher early when the list changes
	// watchers of the monitor stream (monitor.go): nil while nobody
	// watches, which is all the request path looks at. Replaced whole
	// under mu, never changed in place.
	watchers atomic.Pointer[[]*watcher]
}

func newHub() *hub {
	h := &hub{subs: make(map[string]map[*session]struct{}), kick: make(chan struct{}, 1)}
	for _, t := range Topics {
		h.subs[t] = make(map[*session]struct{})
	}
	return h
}

// Errors of Subscribe.
var (
	// ErrNoEvents refuses a client whose door carries no events, or that
	// is not connected (any more).
	ErrNoEvents = errors.New("server: events need a connected native or WebSocket client")
	// ErrUnknownTopic refuses a topic that does not exist.
	ErrUnknownTopic = fmt.Errorf("server: topics are %q", Topics)
)

// subscribe adds s to the topics. A session that has ended is refused:
// it would be sent events forever.
func (h *hub) subscribe(s *session, ts []string) error {
	for _, t := range ts {
		if !slices.Contains(Topics, t) {
			return ErrUnknownTopic
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.gone {
		return ErrNoEvents
	}
	for _, t := range ts {
		h.subs[t][s] = struct{}{}
	}
	return nil
}

// forget removes a closed session from every topic and ends its watch,
// for good.
func (h *hub) forget(s *session) {
	h.mu.Lock()
	s.gone = true
	for _, m := range h.subs {
		delete(m, s)
	}
	h.unwatchLocked(s)
	h.mu.Unlock()
}

// watch makes s a watcher of the monitor stream with filter f, or gives
// its watch the new filter. A session that has ended is refused: its
// watcher would never stop.
func (h *hub) watch(s *session, f *watchFilter) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.gone {
		return ErrNoEvents
	}
	var ws []*watcher
	if p := h.watchers.Load(); p != nil {
		ws = *p
	}
	for _, w := range ws {
		if w.sess == s {
			w.filter.Store(f)
			return nil
		}
	}
	w := &watcher{sess: s, events: make(chan *watched, monitorBuffer), stop: make(chan struct{})}
	w.filter.Store(f)
	next := append(slices.Clip(ws), w)
	h.watchers.Store(&next)
	go w.run()
	return nil
}

// unwatch ends the watch of s; it reports whether there was one.
func (h *hub) unwatch(s *session) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.unwatchLocked(s)
}

// unwatchLocked is unwatch with mu held.
func (h *hub) unwatchLocked(s *session) bool {
	p := h.watchers.Load()
	if p == nil {
		return false
	}
	i := slices.IndexFunc(*p, func(w *watcher) bool { return w.sess == s })
	if i < 0 {
		return false
	}
	close((*p)[i].stop)
	if len(*p) == 1 {
		h.watchers.Store(nil) // nobody watches: the request path is back to one load
		return true
	}
	next := slices.Delete(slices.Clone(*p), i, i+1)
	h.watchers.Store(&next)
	return true
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

// takeDirty reports whether the list changed since the last call.
func (h *hub) takeDirty() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.dirty
	h.dirty = false
	return d
}

// Subscribe subscribes a connected client to event topics (sys.subscribe).
// The clients topic sends the current list at once.
func (s *Server) Subscribe(id uint64, topics []string) error {
	sess := s.table.get(id)
	if sess == nil {
		return ErrNoEvents
	}
	if !sess.codec.Events() {
		return ErrNoEvents
	}
	if err := s.hub.subscribe(sess, topics); err != nil {
		return err
	}
	if slices.Contains(topics, TopicClients) {
		ev := s.table.snapshot().Event()
		if !sess.caller.Admin {
			ev = ev.Redact()
		}
		if b, err := json.Marshal(ev); err == nil {
			sess.sendEvent(TopicClients, b)
		}
	}
	return nil
}

// History returns the samples of the last minutes, oldest first.
func (s *Server) History() []status.Sample {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return slices.Clone(s.hub.history)
}

// publishLoop samples the server every second and publishes TopicStats;
// it publishes TopicClients every second while anyone listens, and after
// a change within clientsEvery: at once when the last publication is
// older, or as soon as it is.
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
		later     *time.Timer // a publication put off to clientsEvery after the last
		laterC    <-chan time.Time
		summary   = s.newSummary(time.Now())
	)
	publish := func(now time.Time) {
		s.hub.takeDirty()
		s.publishClients()
		lastClist = now
		if later != nil {
			later.Stop()
			later, laterC = nil, nil
		}
	}
	defer func() {
		if later != nil {
			later.Stop()
		}
	}()
	for {
		select {
		case <-s.hbStop:
			return
		case <-s.hub.kick:
			if wait := clientsEvery - time.Since(lastClist); wait <= 0 {
				publish(time.Now())
			} else if later == nil {
				later = time.NewTimer(wait)
				laterC = later.C
			}
		case <-laterC:
			later, laterC = nil, nil
			if s.hub.takeDirty() {
				publish(time.Now())
			}
		case now := <-tick.C:
			req := s.metrics.requests()
			bkt = s.metrics.bucketCounts(bkt[:0])
			dt := now.Sub(lastTime).Seconds()
			sm := status.Sample{Time: now.Truncate(time.Millisecond), Doors: make(map[string]int)}
			if dt > 0 {
				sm.Requests = math.Round(float64(req-lastReq) / dt)
			}
			sm.P99 = p99(lastBkt, bkt)
			sm.Clients = s.metrics.clientsByDoor(sm.Doors)
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
			publish(now)
			summary.log(now)
		}
	}
}

// summaryEvery is how often the server logs, at info, the sessions
// opened and closed since the last summary: one line instead of one per
// connection (those are at debug).
const summaryEvery = time.Minute

// summary is the state of the periodic log summary, owned by the publish
// loop.
type summary struct {
	s      *Server
	last   time.Time
	opened uint64
	closed [len(reasonNames)]uint64
}

func (s *Server) newSummary(now time.Time) *summary {
	sm := &summary{s: s, last: now, opened: s.metrics.opened.Load()}
	for r := range sm.closed {
		sm.closed[r] = s.metrics.byReason[r].Load()
	}
	return sm
}

// log writes the summary once summaryEvery has passed, when sessions came
// or went.
func (sm *summary) log(now time.Time) {
	if now.Sub(sm.last) < summaryEvery {
		return
	}
	m := sm.s.metrics
	opened := m.opened.Load()
	attrs := []any{slog.Uint64("opened", opened-sm.opened), slog.Int("clients", sm.s.table.count()),
		slog.Duration("period", now.Sub(sm.last).Round(time.Second))}
	var closed uint64
	for r := range sm.closed {
		n := m.byReason[r].Load()
		if d := n - sm.closed[r]; d > 0 {
			attrs = append(attrs, slog.Uint64("closed_"+strings.ReplaceAll(closeReason(r).String(), " ", "_"), d))
			closed += d
		}
		sm.closed[r] = n
	}
	if opened != sm.opened || closed > 0 {
		sm.s.log.Info("sessions", append(attrs, slog.Uint64("closed", closed))...)
	}
	sm.last, sm.opened = now, opened
}

// publishClients sends the client list to its subscribers: admins get
// remote addresses, others do not.
func (s *Server) publishClients() {
	subs := s.hub.subscribers(TopicClients)
	if len(subs) == 0 {
		return
	}
	ev := s.table.snapshot().Event()
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
			redacted, _ = json.Marshal(ev.Redact()) // marshals whenever full did
		}
		sess.sendEvent(TopicClients, redacted)
	}
}

// p99 estimates the 99th percentile, in microseconds, of the requests
// counted between two snapshots taken by bucketCounts (cumulative bucket
// counts, then the total): the bucket holding it, interpolated linearly.
// Past the last bucket it reports the last bound.
func p99(before, after []uint64) float64 {
	n := len(DurationBuckets)
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
	for i, ub := range DurationBuckets {
		c := after[i] - before[i]
		if float64(c) >= rank {
			frac := (rank - float64(prevCount)) / float64(c-prevCount) // c > prevCount: rank was above prevCount
			return math.Round((prevBound + frac*(ub-prevBound)) * 1e6)
		}
		prevCount, prevBound = c, ub
	}
	return math.Round(DurationBuckets[n-1] * 1e6)
}

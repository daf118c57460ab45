package server

import (
	"slices"
	"sync"
	"time"
)

// ClientInfo describes one connected client, as listed by sys.clients and
// the admin API.
type ClientInfo struct {
	ID           uint64    `json:"id"`
	Door         string    `json:"door"`
	Remote       string    `json:"remote"`
	Name         string    `json:"name,omitempty"`
	Identity     string    `json:"identity,omitempty"` // the verified client certificate's subject (mutual TLS)
	ConnectedAt  time.Time `json:"connected_at"`
	LastSeen     time.Time `json:"last_seen"`
	HeartbeatRTT int64     `json:"heartbeat_rtt_us"` // microseconds; 0 until the first PONG
	InFlight     int64     `json:"in_flight"`
	Requests     uint64    `json:"requests"`
	Errors       uint64    `json:"errors"`
	BytesIn      uint64    `json:"bytes_in"`
	BytesOut     uint64    `json:"bytes_out"`
}

// ClosedInfo describes a recently closed session and why it closed.
type ClosedInfo struct {
	ClientInfo
	ClosedAt time.Time `json:"closed_at"`
	Reason   string    `json:"reason"`
}

// Snapshot is the client list: who is connected now, and who left recently
// (newest first).
type Snapshot struct {
	Clients []ClientInfo `json:"clients"`
	Closed  []ClosedInfo `json:"closed"`
}

// sessionTable holds the live sessions and a bounded ring of closed ones.
type sessionTable struct {
	mu     sync.RWMutex
	live   map[uint64]*session // guarded by mu
	closed []ClosedInfo        // guarded by mu: ring, len == cap once full
	next   int                 // guarded by mu: next ring slot
}

func newSessionTable(history int) *sessionTable {
	return &sessionTable{live: make(map[uint64]*session), closed: make([]ClosedInfo, 0, history)}
}

func (t *sessionTable) add(s *session) {
	t.mu.Lock()
	t.live[s.id] = s
	t.mu.Unlock()
}

// remove takes s out of the live set and records it as closed. It reports
// false when s was not live (already removed).
func (t *sessionTable) remove(s *session, reason closeReason) bool {
	info := ClosedInfo{ClientInfo: s.info(), ClosedAt: time.Now(), Reason: reason.String()}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.live[s.id]; !ok {
		return false
	}
	delete(t.live, s.id)
	if len(t.closed) < cap(t.closed) {
		t.closed = append(t.closed, info)
	} else {
		t.closed[t.next] = info
	}
	t.next = (t.next + 1) % cap(t.closed)
	return true
}

func (t *sessionTable) get(id uint64) *session {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.live[id]
}

func (t *sessionTable) count() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.live)
}

// appendLive appends the live sessions to dst.
func (t *sessionTable) appendLive(dst []*session) []*session {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, s := range t.live {
		dst = append(dst, s)
	}
	return dst
}

func (t *sessionTable) snapshot() Snapshot {
	live := t.appendLive(nil)
	snap := Snapshot{Clients: make([]ClientInfo, 0, len(live))}
	for _, s := range live {
		snap.Clients = append(snap.Clients, s.info())
	}
	slices.SortFunc(snap.Clients, func(a, b ClientInfo) int { return int(a.ID - b.ID) })
	t.mu.RLock()
	n := len(t.closed)
	snap.Closed = make([]ClosedInfo, 0, n)
	for i := 1; i <= n; i++ { // newest first
		snap.Closed = append(snap.Closed, t.closed[(t.next-i+n)%n])
	}
	t.mu.RUnlock()
	return snap
}

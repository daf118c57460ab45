package server

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/nexo-project/nexo/internal/status"
)

// sessionTable holds the live sessions and a bounded ring of closed ones.
type sessionTable struct {
	mu     sync.RWMutex
	live   map[uint64]*session // guarded by mu
	closed []status.ClosedInfo // guarded by mu: ring, len == cap once full
	next   int                 // guarded by mu: next ring slot
}

func newSessionTable(history int) *sessionTable {
	return &sessionTable{live: make(map[uint64]*session), closed: make([]status.ClosedInfo, 0, history)}
}

// add puts s in the live set and counts it in its door's live sessions.
func (t *sessionTable) add(s *session) {
	t.mu.Lock()
	if _, again := t.live[s.caller.ID]; !again {
		s.door.live.Add(1)
	}
	t.live[s.caller.ID] = s
	t.mu.Unlock()
}

// remove takes s out of the live set and records it as closed. It reports
// false when s was not live (already removed).
func (t *sessionTable) remove(s *session, reason closeReason) bool {
	info := status.ClosedInfo{ClientInfo: s.info(), ClosedAt: time.Now(), Reason: reason.String()}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.live[s.caller.ID]; !ok {
		return false
	}
	delete(t.live, s.caller.ID)
	s.door.live.Add(-1)
	t.record(info)
	return true
}

// record adds a closed session to the ring. Call it with mu held.
func (t *sessionTable) record(info status.ClosedInfo) {
	if len(t.closed) < cap(t.closed) {
		t.closed = append(t.closed, info)
	} else {
		t.closed[t.next] = info
	}
	t.next = (t.next + 1) % cap(t.closed)
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

// each calls f for every live session, with the table read-locked: f
// must be short, and not touch the table.
func (t *sessionTable) each(f func(*session)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, s := range t.live {
		f(s)
	}
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

// closedNewestFirst returns the ring of closed sessions, newest first.
func (t *sessionTable) closedNewestFirst() []status.ClosedInfo {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := len(t.closed)
	out := make([]status.ClosedInfo, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, t.closed[(t.next-i+n)%n])
	}
	return out
}

func (t *sessionTable) snapshot() status.Snapshot {
	live := t.appendLive(nil)
	snap := status.Snapshot{Clients: make([]status.ClientInfo, 0, len(live))}
	for _, s := range live {
		snap.Clients = append(snap.Clients, s.info())
	}
	slices.SortFunc(snap.Clients, func(a, b status.ClientInfo) int { return cmp.Compare(a.ID, b.ID) })
	snap.Closed = t.closedNewestFirst()
	return snap
}

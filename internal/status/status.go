// Package status holds what a nexo server reports about itself: the rows
// of its client list, its totals and its per-second samples. These are
// plain values, ready to marshal as JSON; the server fills them, and the
// admin API, the sys methods, the event stream and the cluster view
// (backplane) pass them on without importing the server.
package status

import (
	"slices"
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

// Snapshot is the client list: who is connected now, by id, and who left
// recently, newest first.
type Snapshot struct {
	Clients []ClientInfo `json:"clients"`
	Closed  []ClosedInfo `json:"closed"`
}

// Stats are server-wide totals since the server started.
type Stats struct {
	Version  string            `json:"version"`
	UptimeS  float64           `json:"uptime_s"`
	Clients  int               `json:"clients"`        // connected now
	Doors    map[string]int    `json:"doors"`          // connected now, by door
	Accepted uint64            `json:"accepted"`       // TCP connections accepted, all listeners (a WebSocket once)
	Rejected uint64            `json:"rejected"`       // TCP connections refused (over a limit, or not on an allowed network)
	Requests uint64            `json:"requests"`       // requests answered, all doors
	Closed   map[string]uint64 `json:"closed"`         // sessions closed, by reason
	Last     *Sample           `json:"last,omitempty"` // the last second
}

// Sample is one second of server activity, as published on the stats
// topic and kept for the last few minutes.
type Sample struct {
	Time     time.Time      `json:"t"`
	Requests float64        `json:"rps"`    // requests answered per second
	P99      float64        `json:"p99_us"` // 99th percentile latency, microseconds (bucket estimate)
	Clients  int            `json:"clients"`
	Doors    map[string]int `json:"doors"` // connected clients by door
}

// ClientsEvent is the payload of the clients topic: the current list (at
// most MaxEventClients rows, newest clients first), the total, and the
// recently closed sessions. Remote addresses and identities are only sent
// to admins (see Redact).
type ClientsEvent struct {
	Total   int            `json:"total"`
	Doors   map[string]int `json:"doors"`
	Clients []ClientInfo   `json:"clients"`
	Closed  []ClosedInfo   `json:"closed"`
}

// MaxEventClients bounds the rows of a ClientsEvent; the admin API pages
// through all of them.
const MaxEventClients = 500

// MaxEventClosed bounds the recently closed rows of a ClientsEvent.
const MaxEventClosed = 50

// Event returns the clients event of a snapshot, which it may reorder.
func (snap Snapshot) Event() ClientsEvent {
	ev := ClientsEvent{Total: len(snap.Clients), Doors: make(map[string]int), Closed: snap.Closed}
	for _, c := range snap.Clients {
		ev.Doors[c.Door]++
	}
	slices.Reverse(snap.Clients) // newest first
	ev.Clients = snap.Clients[:min(len(snap.Clients), MaxEventClients)]
	ev.Closed = ev.Closed[:min(len(ev.Closed), MaxEventClosed)]
	return ev
}

// Redact returns a copy without remote addresses and certificate
// identities, for clients that are not admins.
func (ev ClientsEvent) Redact() ClientsEvent {
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

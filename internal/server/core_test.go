package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nexo-project/nexo/internal/status"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// Tests of the session core's pure pieces, with an injected clock or
// testing/synctest's fake one: no test here sleeps on the wall clock.

// fakeConn is a connection that swallows what is written to it.
type fakeConn struct{ net.Conn }

func (fakeConn) Write(p []byte) (int, error)      { return len(p), nil }
func (fakeConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (fakeConn) Close() error                     { return nil }
func (fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (fakeConn) SetWriteDeadline(time.Time) error { return nil }

// recorder is a codec that records the events it is asked to send.
type recorder struct {
	mu     sync.Mutex
	events []event
	pings  bool
}

type event struct {
	at      time.Time
	topic   string
	payload []byte
}

func (r *recorder) AppendResult(b []byte, _ uint32, _ *service.Method, p []byte) ([]byte, error) {
	return append(b, p...), nil
}
func (r *recorder) AppendError(b []byte, _ uint32, _ wire.Code, msg string) []byte {
	return append(b, msg...)
}
func (r *recorder) Events() bool { return true }
func (r *recorder) AppendEvent(b []byte, topic string, payload []byte) []byte {
	r.mu.Lock()
	r.events = append(r.events, event{time.Now(), topic, slices.Clone(payload)})
	r.mu.Unlock()
	return b
}
func (r *recorder) AppendGoodbye(b []byte, _ string) []byte            { return b }
func (r *recorder) AppendFatal(b []byte, _ wire.Code, _ string) []byte { return b }
func (r *recorder) Heartbeats() bool                                   { return r.pings }
func (r *recorder) Ping(time.Time)                                     {}
func (r *recorder) Wake()                                              {}
func (r *recorder) Ordered() bool                                      { return false }

func (r *recorder) taken() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func newTestServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg, service.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// connect registers a session with a recording codec.
func connect(s *Server, name string) (*session, *recorder) {
	rec := &recorder{pings: true}
	sess := s.newSession(fakeConn{}, "test", name, 0, func(*session) Codec { return rec })
	s.register(sess)
	return sess, rec
}

// TestSubscribeAfterEnd: sys.subscribe takes the session from the table
// and subscribes it afterwards; a session that ended in between must not
// be added back to the hub, where it would be sent events forever.
func TestSubscribeAfterEnd(t *testing.T) {
	s := newTestServer(t, Config{})
	sess, _ := connect(s, "leaving")
	if err := s.Subscribe(sess.caller.ID, []string{TopicStats}); err != nil {
		t.Fatal(err)
	}
	sess.end(io.EOF) // the session ends between the lookup and the subscription
	if err := s.hub.subscribe(sess, []string{TopicStats, TopicClients}); err == nil {
		t.Error("an ended session was subscribed")
	}
	for _, topic := range Topics {
		if subs := s.hub.subscribers(topic); len(subs) != 0 {
			t.Errorf("%s has %d subscribers after the session ended", topic, len(subs))
		}
	}
	if err := s.Subscribe(sess.caller.ID, []string{TopicStats}); err == nil {
		t.Error("Subscribe accepted a client that is gone")
	}
}

// TestClientsEventLatency: a change of the client list is published
// within clientsEvery, even when it comes right after a publication (it
// used to wait for the next one-second tick).
func TestClientsEventLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestServer(t, Config{Heartbeat: time.Hour})
		go s.publishLoop()
		watcher, rec := connect(s, "watcher")
		if err := s.Subscribe(watcher.caller.ID, []string{TopicClients}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		synctest.Wait()
		time.Sleep(50 * time.Millisecond)
		connect(s, "newcomer") // 50 ms after the last publication
		time.Sleep(time.Second / 2)
		close(s.hbStop)
		<-s.pubDone

		var seen time.Duration = -1
		for _, ev := range rec.taken() {
			var ce status.ClientsEvent
			if err := json.Unmarshal(ev.payload, &ce); err != nil {
				t.Fatal(err)
			}
			if ce.Total == 2 {
				seen = ev.at.Sub(start)
				break
			}
		}
		if seen < 0 || seen > clientsEvery {
			t.Errorf("the newcomer was published after %v, want within %v of the last publication", seen, clientsEvery)
		}
	})
}

// TestLiveness checks the verdicts of the heartbeat check at chosen times.
func TestLiveness(t *testing.T) {
	s := newTestServer(t, Config{Heartbeat: time.Second, LegacyIdleTimeout: time.Minute})
	sess, _ := connect(s, "c")
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	sess.lastSeen.Store(t0.UnixNano())
	sess.pingSent.Store(t0.UnixNano())
	for _, tt := range []struct {
		after time.Duration
		want  verdict
	}{
		{0, keep},
		{800 * time.Millisecond, keep},
		{875 * time.Millisecond, pingNow}, // 7/8 of the interval
		{2250 * time.Millisecond, pingNow},
		{2250*time.Millisecond + 1, closeSilent}, // 2 intervals plus a quarter
	} {
		if got := s.liveness(sess, at(tt.after)); got != tt.want {
			t.Errorf("after %v: %v, want %v", tt.after, got, tt.want)
		}
	}
	// A door without heartbeats: the idle timeout applies, from the start.
	rec := &recorder{}
	sess = s.newSession(fakeConn{}, "test", "quiet", 0, func(*session) Codec { return rec })
	s.register(sess)
	sess.lastSeen.Store(t0.UnixNano())
	sess.pingSent.Store(t0.UnixNano())
	for _, tt := range []struct {
		after time.Duration
		want  verdict
	}{
		{time.Second, keep}, // no ping is due
		{10 * time.Second, keep},
		{time.Minute, keep},
		{time.Minute + 1, closeIdle},
	} {
		if got := s.liveness(sess, at(tt.after)); got != tt.want {
			t.Errorf("pingless, after %v: %v, want %v", tt.after, got, tt.want)
		}
	}
}

// TestP99 checks the bucket estimate of the 99th percentile.
func TestP99(t *testing.T) {
	n := len(DurationBuckets)
	snap := func(perBucket map[int]uint64) []uint64 {
		out := make([]uint64, n+1)
		var c uint64
		for i := range n {
			c += perBucket[i]
			out[i] = c
		}
		out[n] = c + perBucket[n]
		return out
	}
	zero := snap(nil)
	us := func(s float64) float64 { return float64(int64(s*1e6 + 0.5)) }
	for _, tt := range []struct {
		name          string
		before, after []uint64
		want          float64
	}{
		{"nothing", zero, zero, 0},
		{"all in the first bucket", zero, snap(map[int]uint64{0: 100}), us(DurationBuckets[0] * 0.99)},
		// 100 requests, rank 99: the 99th is in bucket 3 (90 below it),
		// 9 of its 10: 90% of the way from bound 2 to bound 3.
		{"interpolated", zero, snap(map[int]uint64{1: 90, 3: 10}),
			us(DurationBuckets[2] + 0.9*(DurationBuckets[3]-DurationBuckets[2]))},
		{"only the new requests count", snap(map[int]uint64{0: 1000}), snap(map[int]uint64{0: 1000, 5: 100}),
			us(DurationBuckets[4] + 0.99*(DurationBuckets[5]-DurationBuckets[4]))},
		{"past the last bucket", zero, snap(map[int]uint64{n: 100}), us(DurationBuckets[n-1])},
		{"malformed", []uint64{1}, zero, 0},
	} {
		if got := p99(tt.before, tt.after); got != tt.want {
			t.Errorf("%s: %v µs, want %v", tt.name, got, tt.want)
		}
	}
}

// TestClosedRing: the table keeps the newest closed sessions, newest
// first, up to its history.
func TestClosedRing(t *testing.T) {
	tab := newSessionTable(3)
	if got := tab.closedNewestFirst(); len(got) != 0 {
		t.Fatalf("empty ring: %v", got)
	}
	ids := func() []uint64 {
		var out []uint64
		for _, c := range tab.closedNewestFirst() {
			out = append(out, c.ID)
		}
		return out
	}
	for id := uint64(1); id <= 5; id++ {
		tab.record(status.ClosedInfo{ClientInfo: status.ClientInfo{ID: id}})
		want := []uint64{id}
		for j := id - 1; j >= 1 && len(want) < 3; j-- {
			want = append(want, j)
		}
		if got := ids(); !slices.Equal(got, want) {
			t.Errorf("after %d closed: %v, want %v", id, got, want)
		}
	}
}

// TestLogLimiter: one line a second goes through; the others are counted
// and reported with the next.
func TestLogLimiter(t *testing.T) {
	var l logLimiter
	t0 := time.Unix(2000, 0)
	steps := []struct {
		after time.Duration
		allow bool
	}{
		{0, true},
		{time.Millisecond, false},
		{999 * time.Millisecond, false},
		{time.Second, true},
		{1500 * time.Millisecond, false},
	}
	for _, st := range steps {
		if got := l.allow(t0.Add(st.after)); got != st.allow {
			t.Errorf("at %v: allow = %v, want %v", st.after, got, st.allow)
		}
	}
	if n := l.takeSuppressed(); n != 3 {
		t.Errorf("suppressed %d, want 3", n)
	}
	if n := l.takeSuppressed(); n != 0 {
		t.Errorf("suppressed again %d, want 0", n)
	}
}

func (v verdict) String() string {
	return [...]string{"keep", "ping", "close (silent)", "close (idle)"}[v]
}

// TestAuthFailureRule: each failure of an address is slowed, twice as
// much as the one before; past the limit its tokens are checked once a
// second, the others refused unlooked; a correct token checked gets in
// (five wrong tokens used to lock out every client of the address for the
// window); the window's end forgets it all.
func TestAuthFailureRule(t *testing.T) {
	s := newTestServer(t, Config{Tokens: []string{"alpha"}, AuthFailures: 3, AuthWindow: time.Minute})
	t0 := time.Unix(3000, 0)
	now := t0
	var slept []time.Duration
	s.adm.now = func() time.Time { return now }
	s.adm.sleep = func(d time.Duration) { slept = append(slept, d) }
	const from = "192.0.2.1:4000"
	for i, tt := range []struct {
		after time.Duration
		token string
		want  error
		delay time.Duration // the failure's delay; 0: none
	}{
		{0, "alpha", nil, 0},
		{time.Second, "wrong", ErrBadToken, 100 * time.Millisecond},
		{2 * time.Second, "", ErrBadToken, 200 * time.Millisecond},
		{3 * time.Second, "wrong", ErrBadToken, 400 * time.Millisecond}, // the third: over the limit from now on
		{3*time.Second + 1, "alpha", nil, 0},                            // checked: a correct token gets in
		{3*time.Second + 2, "alpha", ErrAuthLimit, 0},                   // within the second: not looked at
		{4*time.Second + 2, "wrong", ErrBadToken, 0},                    // checked, wrong: no delay past the limit
		{4*time.Second + 3, "wrong", ErrAuthLimit, 0},
		{5*time.Second + 3, "alpha", nil, 0},
		{time.Minute + 2*time.Second, "wrong", ErrBadToken, 100 * time.Millisecond}, // the window (from the first failure) is over
	} {
		now = t0.Add(tt.after)
		slept = slept[:0]
		_, err := s.Authenticate(from, tt.token, "test")
		if err != tt.want {
			t.Errorf("step %d (%v, %q): %v, want %v", i, tt.after, tt.token, err, tt.want)
		}
		var got time.Duration
		for _, d := range slept {
			got += d
		}
		if got != tt.delay {
			t.Errorf("step %d: slowed %v, want %v", i, got, tt.delay)
		}
	}
	if _, err := s.Authenticate("192.0.2.2:4000", "alpha", "test"); err != nil {
		t.Errorf("another address: %v", err)
	}
}

// TestAuthFailureTable: IPv6 addresses of one /64 share their failures
// (each used to get its own); and a full table fails closed: the
// addresses it cannot hold share one entry, so a fresh address is still
// slowed and limited (it used to be neither).
func TestAuthFailureTable(t *testing.T) {
	s := newTestServer(t, Config{Tokens: []string{"alpha"}, AuthFailures: 2, AuthWindow: time.Minute})
	now := time.Unix(5000, 0)
	s.adm.now = func() time.Time { return now }
	var slept time.Duration
	s.adm.sleep = func(d time.Duration) { slept += d }
	wrong := func(remote string) error {
		_, err := s.Authenticate(remote, "wrong", "test")
		return err
	}
	_ = wrong("[2001:db8::1]:1")
	_ = wrong("[2001:db8::2]:1") // the same /64: its second failure
	if err := wrong("[2001:db8::3]:1"); err != ErrBadToken {
		t.Fatalf("third failure of the /64: %v", err) // checked: over the limit, once a second
	}
	if err := wrong("[2001:db8::4]:1"); err != ErrAuthLimit {
		t.Errorf("another address of the /64 within the second: %v, want ErrAuthLimit", err)
	}
	if err := wrong("[2001:db8:0:1::1]:1"); err != ErrBadToken {
		t.Errorf("the next /64: %v", err)
	}

	// Fill the table, then fail from addresses it cannot hold.
	for i := range maxFailureEntries {
		s.adm.failures[netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})] = &failLog{since: now, n: 1}
	}
	slept = 0
	for i := range 3 {
		// The third is over the shared limit, and checked: the first check
		// of the second.
		if err := wrong(fmt.Sprintf("198.51.100.%d:1", i+1)); err != ErrBadToken {
			t.Fatalf("untracked failure %d: %v", i+1, err)
		}
	}
	if slept == 0 {
		t.Error("failures of addresses the table cannot hold were not slowed")
	}
	if err := wrong("198.51.100.99:1"); err != ErrAuthLimit {
		t.Errorf("a fresh address past the shared limit: %v, want ErrAuthLimit", err)
	}
	if _, err := s.Authenticate("198.51.100.100:1", "alpha", "test"); err != ErrAuthLimit {
		t.Errorf("within the second: %v", err)
	}
	now = now.Add(time.Second)
	if _, err := s.Authenticate("198.51.100.100:1", "alpha", "test"); err != nil {
		t.Errorf("a correct token checked a second later: %v", err)
	}
}

// TestLogSummary: at the default level there is no line per connection;
// once a minute one line says how many sessions were opened and closed,
// by reason. It used to be two lines per connection at info.
func TestLogSummary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		var mu sync.Mutex
		log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelInfo}))
		s, err := New(Config{Heartbeat: time.Hour}, service.NewRegistry(), log)
		if err != nil {
			t.Fatal(err)
		}
		go s.publishLoop()
		synctest.Wait() // the loop has taken its first counts
		for i := range 3 {
			sess, _ := connect(s, fmt.Sprint("c", i))
			if i < 2 {
				sess.end(io.EOF)
			}
		}
		time.Sleep(summaryEvery + 2*time.Second)
		close(s.hbStop)
		<-s.pubDone
		mu.Lock()
		out := buf.String()
		mu.Unlock()
		if strings.Contains(out, "client connected") || strings.Contains(out, "client disconnected") {
			t.Errorf("a line per connection at info:\n%s", out)
		}
		if strings.Count(out, "msg=sessions") != 1 || !strings.Contains(out, "opened=3") || !strings.Contains(out, "closed_client_closed=2") ||
			!strings.Contains(out, "closed=2") {
			t.Errorf("summary:\n%q", out)
		}
	})
}

// lockedWriter serializes writes to a buffer.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// slowDeadlineConn is a connection whose deadlines take effect late, as
// when the scheduler runs other goroutines between setting a deadline and
// the write it bounds.
type slowDeadlineConn struct{ net.Conn }

func (c slowDeadlineConn) SetWriteDeadline(t time.Time) error {
	err := c.Conn.SetWriteDeadline(t)
	time.Sleep(5 * time.Millisecond)
	return err
}

func (c slowDeadlineConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// TestRefuseLaterSurvivesPreemption: a refusal answered from the accept
// loop reaches the peer even when the goroutine is held up for a few
// milliseconds before writing it (TestRefusalsNeverSilent lost one
// refusal in about 600 runs on a loaded machine while the bound was 1 ms).
func TestRefuseLaterSurvivesPreemption(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{lingering: make(chan lingering, 1)}
	s.refuseLater(slowDeadlineConn{sc}, []byte("BUSY"))
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(client)
	if string(got) != "BUSY" {
		t.Errorf("peer read %q, want the refusal", got)
	}
	(<-s.lingering).c.Close()
}

// TestCodeLabels: application codes (1000..65535) are counted under
// APPLICATION, not under a protocol code that does not exist (CODE_15).
func TestCodeLabels(t *testing.T) {
	slot := func(c wire.Code) string {
		var m metrics
		st := m.stat("test")
		m.record(0, st, c, 0)
		for i := range codeSlots {
			if st.codes[0].n[i].Load() == 1 {
				return codeName(i)
			}
		}
		return ""
	}
	for c, want := range map[wire.Code]string{0: "OK", wire.CodeOverflow: "OVERFLOW", wire.CodeUnavailable: "UNAVAILABLE", 1000: "APPLICATION", 1001: "APPLICATION", 65535: "APPLICATION"} {
		if got := slot(c); got != want {
			t.Errorf("code %d is counted as %q, want %q", c, got, want)
		}
	}
}

// TestSessionContextOnNeed: a session's context is made when first asked
// for, not for every connection; asked for by many goroutines at once it
// is one context; close cancels it with the reason as cause, and one made
// after the close (a request read just before it) is made cancelled.
func TestSessionContextOnNeed(t *testing.T) {
	s := newTestServer(t, Config{})
	sess, _ := connect(s, "idle")
	if sess.life.Load() != nil {
		t.Fatal("a new session made its context before anything asked for it")
	}
	ctxs := make(chan context.Context, 8)
	for range cap(ctxs) {
		go func() { ctxs <- sess.context() }()
	}
	first := <-ctxs
	for range cap(ctxs) - 1 {
		if c := <-ctxs; c != first {
			t.Fatal("goroutines asking at once got different contexts")
		}
	}
	if first.Err() != nil {
		t.Fatalf("the context of a live session is done: %v", first.Err())
	}
	sess.close(reasonKicked)
	if cause := context.Cause(first); cause != reasonKicked {
		t.Errorf("after close: cause %v, want %v", cause, reasonKicked)
	}

	late, _ := connect(s, "late")
	late.close(reasonHeartbeatTimeout)
	if cause := context.Cause(late.context()); cause != reasonHeartbeatTimeout {
		t.Errorf("made after close: cause %v, want %v", cause, reasonHeartbeatTimeout)
	}
}

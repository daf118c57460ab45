// Package upstream serves the methods of an existing JSON-RPC 2.0 service
// over HTTP through nexo: any server, in any language, that answers
// rpc.discover with an OpenRPC document. Its methods join the registry
// (nexo serve --upstream) or the cluster's catalog (nexo worker
// --upstream) under their own names, and every door calls them.
//
// Calls go over a pool of kept-alive HTTP connections, one JSON-RPC call
// per HTTP request (never batched: a batch would tie the calls' fates and
// deadlines together). Each carries its deadline as the HTTP timeout and
// in the Nexo-Deadline header (Unix milliseconds). rpc.discover is fetched
// every Options.Check: it is the health check, and it keeps the methods
// current. While the upstream is down, its methods are answered
// UNAVAILABLE at once.
package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// DeadlineHeader carries a call's deadline to the upstream, in decimal
// Unix milliseconds, as it does over NATS.
const DeadlineHeader = "Nexo-Deadline"

// ServedBy is what sys.describe says serves an upstream's method, before
// its URL.
const ServedBy = "upstream "

// Defaults of Options.
const (
	DefaultCheck   = time.Second
	DefaultMaxBody = 1 << 20
	// DefaultProbeTimeout bounds one fetch of rpc.discover.
	DefaultProbeTimeout = 2 * time.Second
	// MaxDocument bounds an OpenRPC document.
	MaxDocument = 8 << 20
	// DefaultConns is Options.Conns when 0.
	DefaultConns = 64
)

// Options configure an upstream.
type Options struct {
	// Check is how often rpc.discover is fetched, for health and for the
	// methods (DefaultCheck when 0).
	Check time.Duration
	// MaxBody bounds an answer, in bytes: the server's max frame
	// (DefaultMaxBody when 0).
	MaxBody int
	// ProbeTimeout bounds one fetch of rpc.discover as a health check
	// (DefaultProbeTimeout when 0). A fetch that times out marks the
	// upstream down only the second time in a row, so that one slow
	// answer from a busy upstream does not fail calls it could serve; one
	// that cannot connect marks it down at once.
	ProbeTimeout time.Duration
	// Conns is the most connections open to the upstream at once
	// (DefaultConns when 0): the pool's size. A call finding them all
	// busy waits for one, within its deadline.
	Conns int
	Log   *slog.Logger
	// Changed, when set, is told the methods the upstream serves now,
	// each time its document says something new. It runs on the check
	// loop, one call at a time.
	Changed func(u *Upstream, methods []service.Method)
}

// Upstream is one HTTP JSON-RPC service.
type Upstream struct {
	url    string       // where calls go
	name   string       // what is shown: the URL without its query (which may hold a key)
	client *http.Client // calls: the pool
	probe  *http.Client // rpc.discover: a connection of its own, never queued behind calls
	o      Options
	log    *slog.Logger
	up     atomic.Bool
	slow   int           // health checks in a row that timed out; only the loop uses it
	check  chan struct{} // a call failed on the network: check now
	stop   chan struct{}
	done   chan struct{}

	dials, calls, failed, nanos, downs atomic.Uint64
	seconds                            prometheus.Histogram

	mu      sync.Mutex
	doc     []byte // the last document read
	sig     string // what its methods say (signature)
	methods []service.Method
	err     error          // why it is down
	codes   map[string]int // failed calls by code name
}

// New reads the upstream's document at rawURL and starts checking it.
// An error says what is wrong: the URL, the connection, or where in the
// document.
func New(ctx context.Context, rawURL string, o Options) (*Upstream, error) {
	if err := checkURL(rawURL); err != nil {
		return nil, err
	}
	if o.Check <= 0 {
		o.Check = DefaultCheck
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Conns <= 0 {
		o.Conns = DefaultConns
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = DefaultProbeTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	name := shownURL(rawURL)
	u := &Upstream{url: rawURL, name: name, o: o, log: o.Log.With(slog.String("upstream", name)),
		check: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), codes: map[string]int{},
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "nexo_upstream_call_seconds", Help: "How long the upstream took to answer a call, over HTTP.",
			ConstLabels: prometheus.Labels{"upstream": name},
			Buckets:     []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		})}
	u.client = u.pool(o.Conns, &u.dials)
	u.probe = u.pool(1, nil)
	doc, err := u.discover(ctx)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", name, err)
	}
	ds, err := readDocument(doc)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: the OpenRPC document of rpc.discover: %w", name, err)
	}
	if len(ds) == 0 {
		return nil, fmt.Errorf("upstream %s: its OpenRPC document describes no method", name)
	}
	u.doc, u.methods, u.sig = doc, u.make(ds), signature(ds)
	u.up.Store(true)
	go u.loop()
	return u, nil
}

// pool makes an HTTP client of at most conns kept-alive connections. It
// follows no redirect: a call's params go to the URL given, nowhere else.
// dials, when set, counts the connections it opens.
func (u *Upstream) pool(conns int, dials *atomic.Uint64) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if dials != nil {
					dials.Add(1)
				}
				return dialer.DialContext(ctx, network, addr)
			},
			MaxConnsPerHost:     conns,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// shownURL is a URL as listings, errors and metrics show it: without its
// query and fragment, which may hold a key.
func shownURL(raw string) string {
	p, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	p.RawQuery, p.Fragment, p.RawFragment = "", "", ""
	return p.String()
}

// checkURL accepts an absolute http or https URL with a host.
func checkURL(raw string) error {
	p, err := url.Parse(raw)
	if err != nil || p.Scheme != "http" && p.Scheme != "https" || p.Host == "" {
		return fmt.Errorf("upstream %q: want an http:// or https:// URL with a host, such as http://127.0.0.1:8000/rpc", raw)
	}
	if p.User != nil {
		return fmt.Errorf("upstream %q: credentials in the URL would show in every listing; put the upstream behind a local proxy that adds them", raw)
	}
	return nil
}

// URL returns the upstream's URL as it is shown: without its query.
func (u *Upstream) URL() string { return u.name }

// Methods returns the methods the upstream serves now.
func (u *Upstream) Methods() []service.Method {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.methods)
}

// Close stops checking the upstream and closes its idle connections.
func (u *Upstream) Close() {
	close(u.stop)
	<-u.done
	u.client.CloseIdleConnections()
	u.probe.CloseIdleConnections()
}

// loop checks the upstream every Options.Check, and at once when a call
// failed on the network.
func (u *Upstream) loop() {
	defer close(u.done)
	t := time.NewTicker(u.o.Check)
	defer t.Stop()
	for {
		select {
		case <-u.stop:
			return
		case <-t.C:
		case <-u.check:
		}
		u.refresh()
	}
}

// refresh fetches the document: the upstream is up when it answers, and
// its methods change when the document does.
func (u *Upstream) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), u.o.ProbeTimeout)
	doc, err := u.discover(ctx)
	cancel()
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		if u.slow++; u.slow < 2 {
			u.log.Debug("upstream slow to answer its health check", slog.Any("err", err))
			return
		}
	}
	u.slow = 0
	if err != nil {
		u.mu.Lock()
		u.err = err
		u.mu.Unlock()
		if u.up.Swap(false) {
			u.downs.Add(1)
			u.log.Warn("upstream down: its methods are UNAVAILABLE until it answers again", slog.Any("err", err))
		}
		return
	}
	if !u.up.Swap(true) {
		u.log.Info("upstream back")
	}
	u.mu.Lock()
	same := bytes.Equal(doc, u.doc)
	u.mu.Unlock()
	if same {
		return
	}
	ds, err := readDocument(doc)
	if err != nil {
		u.log.Warn("upstream's new OpenRPC document cannot be read; its methods stay as they were", slog.Any("err", err))
		return
	}
	u.mu.Lock()
	u.doc = doc
	sig := signature(ds)
	if sig == u.sig { // new text, same methods (a date in info, keys in another order)
		u.mu.Unlock()
		return
	}
	ms := u.make(ds)
	u.methods, u.sig = ms, sig
	u.mu.Unlock()
	u.log.Info("upstream's methods changed", slog.Int("methods", len(ms)))
	if u.o.Changed != nil {
		u.o.Changed(u, slices.Clone(ms))
	}
}

// discover fetches the upstream's OpenRPC document.
func (u *Upstream) discover(ctx context.Context) ([]byte, error) {
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"rpc.discover"}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := u.probe.Do(req)
	if err != nil {
		err = withoutURL(err)
		if len(err.Error()) > 200 { // net/http quotes what a non-HTTP server said
			return nil, fmt.Errorf("rpc.discover: %.200s... (is it an HTTP server?)", err.Error())
		}
		return nil, fmt.Errorf("rpc.discover: %w", err)
	}
	defer resp.Body.Close()
	b, err := readBody(resp.Body, MaxDocument)
	if err != nil {
		return nil, fmt.Errorf("rpc.discover: %w", err)
	}
	r, err := readResponse(resp, b)
	if err != nil {
		return nil, fmt.Errorf("rpc.discover: %w", err)
	}
	if r.Error != nil {
		return nil, fmt.Errorf("rpc.discover answered error %d %q: the upstream must answer rpc.discover with an OpenRPC document", r.Error.Code, r.Error.Message)
	}
	return r.Result, nil
}

// signature says what described methods say, whatever the text they were
// read from, so that a document that changes without changing its
// methods changes nothing.
func signature(ds []described) string {
	var b strings.Builder
	for _, d := range ds {
		desc, _ := json.Marshal(struct {
			N, S string
			I    bool
			D    service.Description
		}{d.name, d.summary, d.idempotent, d.desc})
		b.Write(desc)
		b.WriteByte('\n')
	}
	return b.String()
}

// make turns described methods into the registry's methods.
func (u *Upstream) make(ds []described) []service.Method {
	ms := make([]service.Method, len(ds))
	for i, d := range ds {
		quoted, _ := json.Marshal(d.name)
		idempotent := d.idempotent
		d.desc.ServedBy = []string{ServedBy + u.name}
		ms[i] = service.Method{
			Name: d.name, Summary: d.summary, Idempotent: idempotent, JSON: service.PassJSON, Desc: d.desc,
			Handler: func(ctx context.Context, req service.Request, dst []byte) ([]byte, error) {
				return u.Call(ctx, quoted, idempotent, req.Payload, dst)
			},
		}
	}
	return ms
}

// Call calls a method (its name as a JSON string) with JSON params (empty
// for none) and appends its JSON result to dst. An idempotent method is
// sent once more when the first attempt fails on the network.
func (u *Upstream) Call(ctx context.Context, name []byte, idempotent bool, params, dst []byte) ([]byte, error) {
	start := time.Now()
	out, err := u.call(ctx, name, idempotent, params, dst)
	u.calls.Add(1)
	u.nanos.Add(uint64(time.Since(start)))
	if err != nil {
		u.failed.Add(1)
		code := service.CodeOf(err)
		u.mu.Lock()
		u.codes[code.String()]++
		u.mu.Unlock()
	}
	return out, err
}

func (u *Upstream) call(ctx context.Context, name []byte, idempotent bool, params, dst []byte) ([]byte, error) {
	if !u.up.Load() {
		return dst, u.downError()
	}
	params = bytes.TrimSpace(params)
	if len(params) > 0 && (params[0] != '{' && params[0] != '[' || !json.Valid(params)) {
		return dst, service.Error(wire.CodeBadPayload, "params must be a JSON object or array")
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, service.DefaultTimeout)
		defer cancel()
		deadline, _ = ctx.Deadline()
	}
	body := make([]byte, 0, 64+len(name)+len(params))
	body = append(body, `{"jsonrpc":"2.0","id":1,"method":`...)
	body = append(body, name...)
	if len(params) > 0 {
		body = append(body, `,"params":`...)
		body = append(body, params...)
	}
	body = append(body, '}')
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.url, bytes.NewReader(body))
		if err != nil {
			return dst, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(DeadlineHeader, strconv.FormatInt(deadline.UnixMilli(), 10))
		sent := time.Now()
		resp, err := u.client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return dst, u.timeout()
			}
			select { // the health check looks at once
			case u.check <- struct{}{}:
			default:
			}
			if idempotent && attempt == 1 {
				continue
			}
			return dst, service.Error(wire.CodeUnavailable, "upstream "+u.name+": "+withoutURL(err).Error())
		}
		b, err := readBody(resp.Body, u.o.MaxBody)
		resp.Body.Close()
		u.seconds.Observe(time.Since(sent).Seconds())
		if err != nil {
			if ctx.Err() != nil {
				return dst, u.timeout()
			}
			return dst, service.Error(wire.CodeInternal, "upstream "+u.name+": "+err.Error())
		}
		r, err := readResponse(resp, b)
		switch {
		case err != nil:
			return dst, service.Error(wire.CodeInternal, "upstream "+u.name+": "+err.Error())
		case r.Error != nil:
			return dst, u.answerError(r.Error)
		}
		return append(dst, r.Result...), nil
	}
}

// withoutURL is a network error without the method and URL net/http puts
// before it (which may hold a key).
func withoutURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

func (u *Upstream) timeout() error {
	return service.Error(wire.CodeTimeout, "upstream "+u.name+" did not answer within the deadline")
}

func (u *Upstream) downError() error {
	u.mu.Lock()
	err := u.err
	u.mu.Unlock()
	msg := "upstream " + u.name + " is down"
	if err != nil {
		msg += ": " + withoutURL(err).Error()
	}
	return service.Error(wire.CodeUnavailable, msg)
}

// answerError maps an upstream's JSON-RPC error to nexo's (see mapCode).
func (u *Upstream) answerError(e *rpcError) error {
	code, kept := mapCode(e.Code)
	if !kept {
		return service.Error(code, fmt.Sprintf("upstream %s: error %d: %s", u.name, e.Code, e.Message))
	}
	return service.Error(code, e.Message)
}

// mapCode maps a JSON-RPC error code to nexo's: -32601 is UNKNOWN_METHOD,
// -32602 BAD_PAYLOAD, -32000 minus a nexo code that code (a nexo-like
// upstream), 1000..65535 a service's own code, unchanged; kept reports
// those. Anything else (-32700, -32600 and -32603 among them) is INTERNAL,
// the upstream's code and message then going in the text.
func mapCode(c int) (code wire.Code, kept bool) {
	switch {
	case c == -32601:
		return wire.CodeUnknownMethod, true
	case c == -32602:
		return wire.CodeBadPayload, true
	case c >= int(wire.MinApplicationCode) && c <= 0xffff:
		return wire.Code(c), true
	case c < -32000 && c >= -32999:
		if n := wire.Code(-32000 - c); n.Known() && n.Answerable() {
			return n, true
		}
	}
	return wire.CodeInternal, false
}

// rpcError is a JSON-RPC error object.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// response is a JSON-RPC response to one call.
type response struct {
	JSONRPC string          `json:"jsonrpc"`
	Result  json.RawMessage `json:"result"`
	Error   *rpcError       `json:"error"`
}

// readResponse reads a JSON-RPC response to one call, whatever the HTTP
// status (some servers send errors with 4xx and 5xx); a body that is not
// one is an error that says what came instead.
func readResponse(resp *http.Response, b []byte) (response, error) {
	var r response
	err := json.Unmarshal(b, &r)
	if err == nil && r.JSONRPC == "2.0" && (r.Result != nil) != (r.Error != nil) {
		return r, nil
	}
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("answered HTTP %s", resp.Status)
	}
	if err == nil {
		err = errors.New(`want "jsonrpc":"2.0" and one of "result" and "error"`)
	}
	return r, fmt.Errorf("answered something that is not a JSON-RPC 2.0 response: %w", err)
}

// errTooLarge is an answer over the limit.
type errTooLarge int

func (e errTooLarge) Error() string {
	return fmt.Sprintf("answered more than %d bytes (the largest answer a client may get: --max-frame)", int(e))
}

// readBody reads at most limit bytes of an answer.
func readBody(r io.Reader, limit int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, errTooLarge(limit)
	}
	return b, nil
}

// Health is what the cluster view and the admin API show of an upstream.
type Health struct {
	URL         string         `json:"url"`
	Up          bool           `json:"up"`
	Error       string         `json:"error,omitempty"` // why it is down
	Methods     int            `json:"methods"`
	Calls       uint64         `json:"calls"`
	Errors      uint64         `json:"errors"`
	ErrorCodes  map[string]int `json:"error_codes,omitempty"`
	AvgMS       float64        `json:"avg_ms"`
	Connections uint64         `json:"connections"` // TCP connections opened so far
	Downs       uint64         `json:"downs"`       // times it was found down
}

// Health returns the upstream's health and counters now.
func (u *Upstream) Health() Health {
	u.mu.Lock()
	defer u.mu.Unlock()
	h := Health{URL: u.name, Up: u.up.Load(), Methods: len(u.methods), Calls: u.calls.Load(), Errors: u.failed.Load(),
		Connections: u.dials.Load(), Downs: u.downs.Load()}
	if !h.Up && u.err != nil {
		h.Error = withoutURL(u.err).Error()
	}
	if len(u.codes) > 0 {
		h.ErrorCodes = make(map[string]int, len(u.codes))
		for k, v := range u.codes {
			h.ErrorCodes[k] = v
		}
	}
	if h.Calls > 0 {
		h.AvgMS = float64(u.nanos.Load()) / float64(h.Calls) / 1e6
	}
	return h
}

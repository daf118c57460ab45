// Package httpguard keeps browsers from being turned against nexo's HTTP
// listeners (the web door and the admin API). It checks the Host header
// against the names a listener answers to, which stops DNS rebinding, and
// tells a request from another origin's page from a same-origin one, so
// that such a page can neither call a method nor open a WebSocket.
package httpguard

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strings"
)

// Policy is what a listener accepts.
type Policy struct {
	// Listen is the listener's address ("127.0.0.1:8080"). Its IP, when it
	// is not unspecified, is a host requests may name.
	Listen string
	// Hosts are more host names requests may name in Host ("nexo.example.com"),
	// beyond localhost, loopback addresses and the listen address.
	Hosts []string
	// Origins are the foreign origins whose pages may call the listener:
	// "https://app.example.com" (scheme, host and port compared), or a host
	// pattern as path.Match takes it ("*.example.com", "example.com:8443"),
	// which any scheme matches.
	Origins []string
}

// Host checks the Host header of every request: a host the listener does
// not answer to gets 421 Misdirected Request. This stops DNS rebinding:
// a page of attacker.example whose name now points at 127.0.0.1 still
// sends "Host: attacker.example".
func (p *Policy) Host(h http.Handler) http.Handler {
	listen := netip.Addr{}
	if host, _, err := net.SplitHostPort(p.Listen); err == nil {
		listen, _ = netip.ParseAddr(host)
	}
	names := map[string]bool{"localhost": true}
	for _, n := range p.Hosts {
		names[normalize(n)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(r.Host, listen, names) {
			http.Error(w, "this server does not answer to host "+r.Host+"; name it by an address it listens on, localhost, or a name given to --allowed-hosts", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hostAllowed reports whether the Host header names this listener: an IP
// literal that is a loopback address or the one it listens on (any IP
// when it listens on all), localhost, or a configured name.
func hostAllowed(hostport string, listen netip.Addr, names map[string]bool) bool {
	if hostport == "" {
		return true // HTTP/1.0 without Host: no browser sends that
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		return ip.IsLoopback() || !listen.IsValid() || listen.IsUnspecified() || ip == listen.Unmap()
	}
	return names[normalize(host)]
}

func normalize(host string) string { return strings.TrimSuffix(strings.ToLower(host), ".") }

// Foreign reports whether a request comes from a page of another origin
// that is not allowed: its Origin is neither the listener's own (scheme,
// host and port) nor one of Origins, or, without an Origin, the browser's
// Sec-Fetch-Site says it is not same-origin. Requests from programs (no
// Origin, no Sec-Fetch-Site) are not foreign.
func (p *Policy) Foreign(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		return !sameOrigin(r, o) && !p.allowed(o)
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return false
	}
	return true
}

// sameOrigin reports whether origin is the request's own: the scheme the
// listener speaks, and the host and port the request was sent to.
func sameOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false // "null" (a sandboxed or file page) and junk
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.EqualFold(u.Scheme, scheme) && strings.EqualFold(withPort(u.Host, u.Scheme), withPort(r.Host, scheme))
}

// withPort adds the scheme's default port to a host that has none.
func withPort(host, scheme string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if strings.EqualFold(scheme, "https") {
		return net.JoinHostPort(strings.Trim(host, "[]"), "443")
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), "80")
}

// allowed reports whether a foreign origin is one of Origins.
func (p *Policy) allowed(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	for _, pat := range p.Origins {
		if scheme, host, ok := strings.Cut(pat, "://"); ok {
			if strings.EqualFold(scheme, u.Scheme) && strings.EqualFold(withPort(host, scheme), withPort(u.Host, u.Scheme)) {
				return true
			}
			continue
		}
		if m, _ := path.Match(strings.ToLower(pat), strings.ToLower(u.Host)); m {
			return true
		}
	}
	return false
}

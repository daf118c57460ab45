package server

import (
	"net/http"
	"strings"
)

// BearerToken returns the token of an "Authorization: Bearer" header, and
// whether the request has an Authorization header at all. A header that
// is not a bearer token is returned whole: it is a token presented, which
// matches none (a wrong token is refused even where none is required).
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok && tok != "" {
		return tok, true
	}
	return h, true
}

// RequestToken returns the token an HTTP request carries, from
// "Authorization: Bearer" or, for a WebSocket (browsers cannot set its
// headers), the query parameter token, and whether it carries one.
func RequestToken(r *http.Request) (string, bool) {
	if tok, ok := BearerToken(r); ok {
		return tok, true
	}
	if r.URL.Query().Has("token") {
		return r.URL.Query().Get("token"), true
	}
	return "", false
}

// RequestIdentity returns the subject of the verified client certificate
// of an HTTPS request (mutual TLS), or "".
func RequestIdentity(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return r.TLS.VerifiedChains[0][0].Subject.String()
	}
	return ""
}

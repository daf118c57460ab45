package httpguard

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHost(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})
	for _, tt := range []struct {
		listen, host string
		hosts        []string
		want         int
	}{
		{"127.0.0.1:8080", "127.0.0.1:8080", nil, 200},
		{"127.0.0.1:8080", "localhost:8080", nil, 200},
		{"127.0.0.1:8080", "LOCALHOST.:8080", nil, 200},
		{"127.0.0.1:8080", "[::1]:8080", nil, 200},
		{"127.0.0.1:8080", "127.1.2.3:8080", nil, 200}, // loopback
		{"127.0.0.1:8080", "attacker.example", nil, 421},
		{"127.0.0.1:8080", "attacker.example:8080", nil, 421},
		{"127.0.0.1:8080", "192.0.2.9:8080", nil, 421}, // not where it listens
		{"192.0.2.9:8080", "192.0.2.9:8080", nil, 200},
		{"0.0.0.0:8080", "192.0.2.9:8080", nil, 200}, // listens on every address
		{"0.0.0.0:8080", "nexo.example.com:8080", nil, 421},
		{"0.0.0.0:8080", "nexo.example.com:8080", []string{"Nexo.Example.com"}, 200},
		{"127.0.0.1:8080", "", nil, 200}, // HTTP/1.0
	} {
		p := &Policy{Listen: tt.listen, Hosts: tt.hosts}
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = tt.host
		w := httptest.NewRecorder()
		p.Host(ok).ServeHTTP(w, r)
		if w.Code != tt.want {
			t.Errorf("listen %s, Host %q, hosts %v: %d, want %d", tt.listen, tt.host, tt.hosts, w.Code, tt.want)
		}
	}
}

func TestForeign(t *testing.T) {
	for _, tt := range []struct {
		name    string
		host    string
		tls     bool
		hdr     map[string]string
		origins []string
		want    bool
	}{
		{"a program", "127.0.0.1:8080", false, nil, nil, false},
		{"same origin", "127.0.0.1:8080", false, map[string]string{"Origin": "http://127.0.0.1:8080"}, nil, false},
		{"same origin, default port", "localhost", false, map[string]string{"Origin": "http://localhost"}, nil, false},
		{"another port", "127.0.0.1:8080", false, map[string]string{"Origin": "http://127.0.0.1:9999"}, nil, true},
		{"https origin on a plain door", "127.0.0.1:8080", false, map[string]string{"Origin": "https://127.0.0.1:8080"}, nil, true},
		{"https door, https origin", "127.0.0.1:8443", true, map[string]string{"Origin": "https://127.0.0.1:8443"}, nil, false},
		{"another site", "127.0.0.1:8080", false, map[string]string{"Origin": "https://attacker.example"}, nil, true},
		{"null origin", "127.0.0.1:8080", false, map[string]string{"Origin": "null"}, nil, true},
		{"allowed by host pattern", "127.0.0.1:8080", false, map[string]string{"Origin": "https://app.example.com"}, []string{"*.example.com"}, false},
		{"allowed by origin", "127.0.0.1:8080", false, map[string]string{"Origin": "https://app.example.com"}, []string{"https://app.example.com"}, false},
		{"scheme of an allowed origin differs", "127.0.0.1:8080", false, map[string]string{"Origin": "http://app.example.com"}, []string{"https://app.example.com"}, true},
		{"Sec-Fetch-Site cross-site", "127.0.0.1:8080", false, map[string]string{"Sec-Fetch-Site": "cross-site"}, nil, true},
		{"Sec-Fetch-Site same-site", "127.0.0.1:8080", false, map[string]string{"Sec-Fetch-Site": "same-site"}, nil, true},
		{"Sec-Fetch-Site same-origin", "127.0.0.1:8080", false, map[string]string{"Sec-Fetch-Site": "same-origin"}, nil, false},
		{"typed in the address bar", "127.0.0.1:8080", false, map[string]string{"Sec-Fetch-Site": "none"}, nil, false},
	} {
		p := &Policy{Origins: tt.origins}
		r := httptest.NewRequest("POST", "/rpc", nil)
		r.Host = tt.host
		if tt.tls {
			r.TLS = &tls.ConnectionState{}
		}
		for k, v := range tt.hdr {
			r.Header.Set(k, v)
		}
		if got := p.Foreign(r); got != tt.want {
			t.Errorf("%s: Foreign = %v, want %v", tt.name, got, tt.want)
		}
	}
}

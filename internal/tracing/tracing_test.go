package tracing

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestEndpoint: the flag wins, then the traces endpoint variable, then the
// general one; none is tracing off.
func TestEndpoint(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	if got := Endpoint(""); got != "" {
		t.Errorf("nothing set: %q", got)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318")
	if got := Endpoint(""); got != "http://general:4318" {
		t.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %q", got)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/v1/traces")
	if got := Endpoint(""); got != "http://traces:4318/v1/traces" {
		t.Errorf("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: %q", got)
	}
	if got := Endpoint("http://flag:4318"); got != "http://flag:4318" {
		t.Errorf("the flag: %q", got)
	}
}

// TestStart: no endpoint is tracing off (no tracer); a malformed one, by
// flag or variable, is an error naming it; a real one exports the spans over OTLP/HTTP to its
// /v1/traces, which a stand-in collector receives when the tracer stops.
func TestStart(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	ctx := context.Background()
	if tr, stop, err := Start(ctx, "", "test"); tr != nil || err != nil || stop(ctx) != nil {
		t.Errorf("no endpoint: tracer %v, err %v", tr, err)
	}
	for _, bad := range []string{"127.0.0.1:4318", "ftp://x", "http://"} {
		if _, _, err := Start(ctx, bad, "test"); err == nil || !strings.HasPrefix(err.Error(), "--otlp-endpoint ") {
			t.Errorf("endpoint %q: %v; want an error naming --otlp-endpoint", bad, err)
		}
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(v, "::bad")
		if _, _, err := Start(ctx, "", "test"); err == nil || !strings.HasPrefix(err.Error(), v+" ") {
			t.Errorf("a malformed %s: %v; want an error naming it", v, err)
		}
		if err := CheckEndpoint(""); err == nil || !strings.HasPrefix(err.Error(), v+" ") {
			t.Errorf("CheckEndpoint, a malformed %s: %v; want an error naming it", v, err)
		}
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	var got atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" && r.URL.Path == "/v1/traces" && r.Header.Get("Content-Type") == "application/x-protobuf" {
			got.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	tr, stop, err := Start(ctx, collector.URL, "test")
	if err != nil {
		t.Fatal(err)
	}
	_, sp := tr.Start(ctx, "work")
	sp.End()
	if err := stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got.Load() == 0 {
		t.Error("the collector received no traces")
	}
}

// Package tracing turns requests that cross processes into OpenTelemetry
// traces: the door that read a request, the forwarder, the NATS hop, the
// worker and the handler each add a span, and the W3C trace context travels
// between them (the traceparent header on NATS and HTTP, a binary field on
// the native door; see docs/protocol.md).
//
// Tracing is off unless an OTLP endpoint is configured. Off, there is no
// tracer: the request path tests one nil pointer and allocates nothing.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/nexo-project/nexo/internal/buildinfo"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// Header is the W3C trace context header that carries a span's context
// between processes, on NATS messages as on HTTP requests.
const Header = "traceparent"

// Endpoint returns the OTLP endpoint tracing exports to: flag when set,
// otherwise the standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
// OTEL_EXPORTER_OTLP_ENDPOINT. Empty means tracing is off.
func Endpoint(flag string) string {
	endpoint, _ := endpointOf(flag)
	return endpoint
}

// endpointOf returns Endpoint(flag) and where it came from: the flag
// (--otlp-endpoint) or the variable's name, for errors that name what the
// user set.
func endpointOf(flag string) (endpoint, source string) {
	if flag != "" {
		return flag, "--otlp-endpoint"
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if e := os.Getenv(v); e != "" {
			return e, v
		}
	}
	return "", ""
}

// Start returns a tracer exporting over OTLP/HTTP, and the function that
// flushes and stops it. flag (--otlp-endpoint) is the collector's base URL,
// such as http://127.0.0.1:4318, to which /v1/traces is added, as to
// OTEL_EXPORTER_OTLP_ENDPOINT; without it the SDK reads the OTEL_*
// variables itself (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is taken as it is).
// The other OTEL_* variables apply either way: OTEL_SERVICE_NAME,
// OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_HEADERS. When neither flag nor
// variable names an endpoint, the tracer is nil: tracing is off. service
// names the process's role in its spans.
func Start(ctx context.Context, flag, service string) (trace.Tracer, func(context.Context) error, error) {
	endpoint, source := endpointOf(flag)
	if endpoint == "" {
		return nil, func(context.Context) error { return nil }, nil
	}
	u, err := checkURL(endpoint, source)
	if err != nil {
		return nil, nil, err
	}
	var opts []otlptracehttp.Option
	if flag != "" {
		if !strings.HasSuffix(u.Path, "/v1/traces") {
			u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
		}
		opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %q: %w", source, endpoint, err)
	}
	tp := NewProvider(service, sdktrace.WithBatcher(exp))
	return Tracer(tp, service), tp.Shutdown, nil
}

// CheckEndpoint reports whether the endpoint Start would use (see
// Endpoint) is a URL it can export to. The variables are checked as the
// flag is: the SDK would take a malformed one and fail only when it first
// exports. The error names the flag or the variable the endpoint came
// from.
func CheckEndpoint(flag string) error {
	endpoint, source := endpointOf(flag)
	if endpoint == "" {
		return nil
	}
	_, err := checkURL(endpoint, source)
	return err
}

// checkURL parses an endpoint that came from source.
func checkURL(endpoint, source string) (*url.URL, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s %q: want an OTLP/HTTP URL such as http://127.0.0.1:4318", source, endpoint)
	}
	return u, nil
}

// NewProvider returns an SDK tracer provider with nexo's resource and the
// given options, such as an exporter; tests pass an in-memory one. The
// resource has the service's version, and its name: OTEL_SERVICE_NAME, or
// else service ("nexo serve" is named nexo-serve).
func NewProvider(service string, opts ...sdktrace.TracerProviderOption) *sdktrace.TracerProvider {
	attrs := []attribute.KeyValue{semconv.ServiceVersion(buildinfo.Read().Version)}
	if os.Getenv("OTEL_SERVICE_NAME") == "" && !strings.Contains(os.Getenv("OTEL_RESOURCE_ATTRIBUTES"), "service.name=") {
		attrs = append(attrs, semconv.ServiceName(strings.ReplaceAll(service, " ", "-")))
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attrs...))
	if err != nil {
		res = resource.Default()
	}
	return sdktrace.NewTracerProvider(append([]sdktrace.TracerProviderOption{sdktrace.WithResource(res)}, opts...)...)
}

// Tracer returns tp's tracer for nexo. service names the process's role
// ("nexo serve", "nexo worker"), kept as an attribute of its spans; the
// service name itself comes from OTEL_SERVICE_NAME.
func Tracer(tp trace.TracerProvider, service string) trace.Tracer {
	return tp.Tracer("github.com/nexo-project/nexo", trace.WithInstrumentationAttributes(attribute.String("nexo.role", service)))
}

// propagator reads and writes traceparent (and tracestate).
var propagator = propagation.TraceContext{}

// Carrier adapts a header map with exact keys (NATS headers are case
// sensitive) to the propagator.
type Carrier map[string][]string

// Get returns the first value of key.
func (c Carrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set sets key to value.
func (c Carrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the keys.
func (c Carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes ctx's span context into headers (traceparent, and
// tracestate when there is one).
func Inject(ctx context.Context, headers map[string][]string) {
	propagator.Inject(ctx, Carrier(headers))
}

// Extract returns ctx with the remote span context headers carry, or ctx
// as it is when they carry none or an invalid one.
func Extract(ctx context.Context, headers map[string][]string) context.Context {
	return propagator.Extract(ctx, Carrier(headers))
}

// ExtractHTTP is Extract for HTTP headers, whose keys are canonical.
func ExtractHTTP(ctx context.Context, h http.Header) context.Context {
	return propagator.Extract(ctx, propagation.HeaderCarrier(h))
}

// FromBinary returns ctx with the remote span context of a native
// REQUEST's trace field (wire.TraceLen bytes), or ctx as it is when the
// field is invalid (a zero trace or span id), as W3C asks.
func FromBinary(ctx context.Context, b []byte) context.Context {
	if len(b) != wire.TraceLen {
		return ctx
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID(b[:16]),
		SpanID:     trace.SpanID(b[16:24]),
		TraceFlags: trace.TraceFlags(b[24]),
		Remote:     true,
	})
	if !sc.IsValid() {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// UnknownMethod is the name a span takes when its call is answered
// UNKNOWN_METHOD: a fixed name, so that callers cannot make span names
// without end by calling names that do not exist.
const UnknownMethod = "unknown method"

// Span is a request's span, with the context that holds it.
type Span struct {
	Ctx  context.Context // holds the span: the parent of what the request does next
	span trace.Span
}

// StartServer starts the span of a request read from a door or a NATS
// message: method is what was called (the span's name, until an answer
// UNKNOWN_METHOD renames it UnknownMethod), door where, and parent holds
// the remote span context the request carried, if any.
func StartServer(parent context.Context, t trace.Tracer, door, method string) *Span {
	ctx, sp := t.Start(parent, method, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attribute.String("rpc.system", "nexo"),
		attribute.String("rpc.method", method),
		attribute.String("nexo.door", door),
	))
	return &Span{Ctx: ctx, span: sp}
}

// StartChild starts a span of kind inside parent's trace: the forwarder's
// hop (client) or the handler (internal).
func StartChild(parent context.Context, t trace.Tracer, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) *Span {
	ctx, sp := t.Start(parent, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	return &Span{Ctx: ctx, span: sp}
}

// End ends s with the request's result code (0: success) and, for a
// failure, its message. A nil Span is tracing off: End does nothing.
func (s *Span) End(code wire.Code, msg string) {
	if s == nil {
		return
	}
	if code == wire.CodeUnknownMethod {
		s.span.SetName(UnknownMethod)
		s.span.SetAttributes(attribute.String("rpc.method", UnknownMethod))
	}
	if code != 0 {
		s.span.SetAttributes(attribute.String("nexo.code", code.String()))
		s.span.SetStatus(codes.Error, msg)
	}
	s.span.End()
}

// Finish ends s with the result of a call: success when err is nil,
// otherwise err's code and the message a client is sent for it.
func (s *Span) Finish(err error) {
	if s == nil {
		return
	}
	if err == nil {
		s.End(0, "")
		return
	}
	code := service.CodeOf(err)
	s.End(code, service.ErrorMessage(code, err))
}

// Context returns the span's context; nil for a nil Span (tracing off),
// as service.Request.Trace wants it.
func (s *Span) Context() context.Context {
	if s == nil {
		return nil
	}
	return s.Ctx
}

// ContextOr returns the span's context, or def for a nil Span (tracing
// off).
func (s *Span) ContextOr(def context.Context) context.Context {
	if s == nil {
		return def
	}
	return s.Ctx
}

// LogHandler wraps h so that a record logged with a context that holds a
// span (slog's ...Context methods) carries its trace_id and span_id.
func LogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ slog.Handler }

func (l logHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
		}
	}
	return l.Handler.Handle(ctx, r)
}

func (l logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return logHandler{l.Handler.WithAttrs(as)}
}

func (l logHandler) WithGroup(name string) slog.Handler { return logHandler{l.Handler.WithGroup(name)} }

package otlp

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Spans that the OTel SDK's OTLP/HTTP exporter sends arrive whole: ids, parent, kind,
// service.name and attributes; two receivers do not share what they receive.
func TestReceiverKeepsWhatTheSDKExports(t *testing.T) {
	r := startReceiver(t)
	other := startReceiver(t)
	if r.Endpoint() == other.Endpoint() || !strings.HasPrefix(r.Endpoint(), "http://127.0.0.1:") {
		t.Fatalf("endpoints %s and %s", r.Endpoint(), other.Endpoint())
	}

	exporter, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(r.Endpoint()+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "probe"))))
	tracer := provider.Tracer("probe")
	ctx, parent := tracer.Start(context.Background(), "parent", trace.WithSpanKind(trace.SpanKindServer))
	_, child := tracer.Start(ctx, "child", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system", "sqlite")))
	child.End()
	parent.End()
	// Shutdown flushes.
	if err := provider.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	traceID := parent.SpanContext().TraceID().String()
	got, ok := r.WaitTrace(traceID, 10*time.Second, func(tr Trace) bool { return len(tr) == 2 })
	if !ok {
		t.Fatalf("trace %s did not arrive whole:\n%s", traceID, got)
	}
	server, okServer := got.Find("probe", ptrace.SpanKindServer)
	client, okClient := got.Find("probe", ptrace.SpanKindClient)
	if !okServer || !okClient || server.Name != "parent" || client.Name != "child" {
		t.Fatalf("kinds or names lost:\n%s", got)
	}
	if server.ParentSpanID != "" || client.ParentSpanID != parent.SpanContext().SpanID().String() ||
		!got.Descends(client, server.SpanID) || got.Descends(server, client.SpanID) {
		t.Errorf("parent links lost:\n%s", got)
	}
	if client.Attributes["db.system"] != "sqlite" {
		t.Errorf("attributes: %v", client.Attributes)
	}
	if r.Count() != 2 || len(other.Spans()) != 0 {
		t.Errorf("counted %d spans here, %d in the other receiver", r.Count(), len(other.Spans()))
	}
}

// A counting receiver counts and keeps nothing.
func TestCountingReceiverOnlyCounts(t *testing.T) {
	r, err := StartCounting("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop(context.Background())
	exporter, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(r.Endpoint()+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter))
	for range 10 {
		_, span := provider.Tracer("probe").Start(context.Background(), "one")
		span.End()
	}
	if err := provider.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.Count() != 10 || len(r.Spans()) != 0 {
		t.Errorf("counted %d, kept %d", r.Count(), len(r.Spans()))
	}
}

func startReceiver(t *testing.T) *Receiver {
	t.Helper()
	r, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	return r
}

// A printing receiver writes each span as a line: ids, parent, service, kind, name.
func TestPrintingReceiverWritesALineASpan(t *testing.T) {
	var out syncBuffer
	r, err := StartPrinting("127.0.0.1:0", &out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop(context.Background())
	exporter, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(r.Endpoint()+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "probe"))))
	_, span := provider.Tracer("probe").Start(context.Background(), "GET /x", trace.WithSpanKind(trace.SpanKindServer))
	span.End()
	if err := provider.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "trace " + span.SpanContext().TraceID().String() + " span " + span.SpanContext().SpanID().String() +
		` parent - probe Server "GET /x" `
	if got := out.String(); !strings.HasPrefix(got, want) || strings.Count(got, "\n") != 1 || r.Count() != 1 {
		t.Errorf("printed %q, want one line starting %q", got, want)
	}
}

// syncBuffer is a strings.Builder that the receiver's goroutines and the test can share.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

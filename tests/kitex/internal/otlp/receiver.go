// Package otlp is an OTLP/HTTP receiver for tests and benchmarks: the OpenTelemetry
// Collector's own OTLP receiver (otlpreceiver, HTTP protocol only) run in-process on a
// loopback port, feeding a consumer that counts the spans and, for tests, keeps them.
//
// Exporters are pointed at Endpoint(), the base URL (OTEL_EXPORTER_OTLP_ENDPOINT); they POST
// to Endpoint()+"/v1/traces", protobuf or JSON, compressed or not, as the Collector takes them.
package otlp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	nooptrace "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// Receiver is a running OTLP/HTTP receiver.
type Receiver struct {
	endpoint string
	traces   receiver.Traces
	keep     bool
	count    atomic.Int64

	mu      sync.Mutex
	spans   []Span
	arrived chan struct{} // closed, and replaced, whenever spans arrive
	print   io.Writer     // where each span is written as a line, if anywhere
}

// Start runs a receiver on a free loopback port that keeps every span it receives, for tests.
func Start() (*Receiver, error) { return start("127.0.0.1:0", true, nil) }

// StartCounting runs a receiver on listen (host:port; port 0 picks one) that only counts the
// spans, for benchmarks, which export too many to keep.
func StartCounting(listen string) (*Receiver, error) { return start(listen, false, nil) }

// StartPrinting runs a counting receiver on listen that also writes every span to w, one a
// line, for people looking at traces by hand.
func StartPrinting(listen string, w io.Writer) (*Receiver, error) {
	return start(listen, false, w)
}

func start(listen string, keep bool, print io.Writer) (*Receiver, error) {
	r := &Receiver{keep: keep, arrived: make(chan struct{}), print: print}
	next, err := consumer.NewTraces(r.consume)
	if err != nil {
		return nil, err
	}

	factory := otlpreceiver.NewFactory()
	cfg := factory.CreateDefaultConfig().(*otlpreceiver.Config)
	// HTTP on, with the Collector's defaults (paths /v1/traces…); gRPC stays off, as it is
	// by default until configured.
	cfg.Protocols.HTTP.GetOrInsertDefault().ServerConfig.NetAddr.Endpoint = listen

	// The receiver does not hand out its listener, but it logs the address it bound: that is
	// how a port of 0 becomes known.
	core, logged := observer.New(zapcore.InfoLevel)
	settings := receiver.Settings{
		ID: component.NewID(factory.Type()),
		TelemetrySettings: component.TelemetrySettings{
			Logger:         zap.New(core),
			TracerProvider: nooptrace.NewTracerProvider(),
			MeterProvider:  noopmetric.NewMeterProvider(),
		},
		BuildInfo: component.NewDefaultBuildInfo(),
	}
	if r.traces, err = factory.CreateTraces(context.Background(), settings, cfg, next); err != nil {
		return nil, err
	}
	if err := r.traces.Start(context.Background(), host{}); err != nil {
		return nil, err
	}
	addr := boundAddress(logged)
	if addr == "" {
		_ = r.traces.Shutdown(context.Background())
		return nil, errors.New(`otlp: the receiver did not log the address it listens on ("Starting HTTP server", endpoint)`)
	}
	r.endpoint = "http://" + addr
	return r, nil
}

// boundAddress is the endpoint the receiver logged when its HTTP server started.
func boundAddress(logged *observer.ObservedLogs) string {
	for _, entry := range logged.FilterMessage("Starting HTTP server").All() {
		if endpoint, ok := entry.ContextMap()["endpoint"].(string); ok {
			return endpoint
		}
	}
	return ""
}

// host is the Collector host the receiver runs in: one without extensions.
type host struct{}

func (host) GetExtensions() map[component.ID]component.Component { return nil }

// Endpoint is the receiver's base URL, http://127.0.0.1:PORT, as OTEL_EXPORTER_OTLP_ENDPOINT
// takes it.
func (r *Receiver) Endpoint() string { return r.endpoint }

// Count is how many spans have arrived.
func (r *Receiver) Count() int64 { return r.count.Load() }

// Stop shuts the receiver down, waiting for the exports in flight.
func (r *Receiver) Stop(ctx context.Context) error { return r.traces.Shutdown(ctx) }

// consume takes one export's spans.
func (r *Receiver) consume(_ context.Context, td ptrace.Traces) error {
	r.count.Add(int64(td.SpanCount()))
	if !r.keep && r.print == nil {
		return nil
	}
	spans := flatten(td)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.print != nil {
		for _, s := range spans {
			fmt.Fprintf(r.print, "trace %s span %s parent %s %s %s %q %v\n",
				s.TraceID, s.SpanID, cmp.Or(s.ParentSpanID, "-"), s.Service, s.Kind, s.Name, s.Duration)
		}
	}
	if !r.keep {
		return nil
	}
	r.spans = append(r.spans, spans...)
	close(r.arrived)
	r.arrived = make(chan struct{})
	return nil
}

// Spans is every span received so far, in arrival order.
func (r *Receiver) Spans() []Span {
	spans, _ := r.snapshot()
	return spans
}

func (r *Receiver) snapshot() ([]Span, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...), r.arrived
}

// Wait waits until done holds for the spans received so far, or within has passed; the spans
// it last looked at and whether done held.
func (r *Receiver) Wait(within time.Duration, done func([]Span) bool) ([]Span, bool) {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		spans, arrived := r.snapshot()
		if done(spans) {
			return spans, true
		}
		select {
		case <-arrived:
		case <-deadline.C:
			return spans, false
		}
	}
}

// WaitTrace waits until done holds for the spans of trace traceID (32 lowercase hex digits),
// or within has passed; the trace's spans it last looked at and whether done held.
func (r *Receiver) WaitTrace(traceID string, within time.Duration, done func(Trace) bool) (Trace, bool) {
	var trace Trace
	_, ok := r.Wait(within, func(spans []Span) bool {
		trace = Of(spans, traceID)
		return done(trace)
	})
	return trace, ok
}

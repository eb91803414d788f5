// Package telemetry sets up OpenTelemetry tracing for the Go peer's commands the way a Kitex
// user does with the OTel SDK: spans batched and exported over OTLP/HTTP, W3C TraceContext
// propagation. The commands then add kitex-contrib/obs-opentelemetry's tracing suites.
//
// It is configured by the OTel SDK's standard environment, and does nothing unless
// OTEL_EXPORTER_OTLP_ENDPOINT is set (a base URL such as http://127.0.0.1:4318: spans are
// POSTed to its /v1/traces). OTEL_SERVICE_NAME overrides a command's service name, and
// OTEL_BSP_SCHEDULE_DELAY how long spans wait to be batched (5 s by default).
//
// obs-opentelemetry's own provider package is not used: it always builds OTLP/gRPC
// exporters, for metrics too.
package telemetry

import (
	"context"
	"log"
	"os"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// EndpointVariable is the standard variable that turns tracing on.
const EndpointVariable = "OTEL_EXPORTER_OTLP_ENDPOINT"

// Tracing is tracing set up for a process.
type Tracing struct {
	provider *sdktrace.TracerProvider
}

// Setup installs a global tracer provider exporting spans of service, and the W3C
// TraceContext propagator, when OTEL_EXPORTER_OTLP_ENDPOINT is set; nil when it is not.
func Setup(ctx context.Context, service string) (*Tracing, error) {
	if os.Getenv(EndpointVariable) == "" {
		return nil, nil
	}
	// The exporter reads the endpoint, headers, timeout and compression from the environment.
	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, err
	}
	// Later sources win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES over service.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, err
	}
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	otel.SetTracerProvider(provider)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return &Tracing{provider: provider}, nil
}

// Shutdown exports the spans still buffered and stops exporting; to be called before the
// process exits. A backend that is down costs at most 5 s and is logged, not fatal. Nothing
// to do when tracing is off (nil).
func (t *Tracing) Shutdown() {
	if t == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.provider.Shutdown(ctx); err != nil {
		log.Printf("flushing spans: %v", err)
	}
}

// Package telemetry sets up OpenTelemetry from the standard OTEL_*
// environment variables, exports the core's job events as metrics and
// spans, and
// builds the structured logger weir's binaries write with.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Options name the binary being set up.
type Options struct {
	// ServiceName is the service.name used unless OTEL_SERVICE_NAME or
	// OTEL_RESOURCE_ATTRIBUTES say otherwise, e.g. "weir-controller".
	ServiceName string
	// ServiceVersion is the service.version, when known.
	ServiceVersion string
	// Logger receives OpenTelemetry's own errors, such as a collector
	// that cannot be reached (default slog.Default()).
	Logger *slog.Logger
}

// Telemetry is the OpenTelemetry set-up of one process.
type Telemetry struct {
	mp       *sdkmetric.MeterProvider // nil when no metrics are exported
	tp       *sdktrace.TracerProvider // nil when no traces are exported
	res      *resource.Resource
	exporter string
	tracing  string
}

// Setup reads the OTEL_* environment variables and, if they ask for it,
// starts exporting metrics and installs the meter provider as the global
// one (so that instruments made from otel.GetMeterProvider, such as the
// AWS request ledger's, export too).
//
// Metrics are exported when OTEL_METRICS_EXPORTER names an exporter
// ("otlp", "console" or "prometheus"), or when it is unset and an OTLP
// endpoint is (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT). Otherwise, or with
// OTEL_METRICS_EXPORTER=none or OTEL_SDK_DISABLED=true, nothing is
// exported and nothing runs in the background.
//
// Call Shutdown before the process exits to send what is buffered.
func Setup(ctx context.Context, o Options) (*Telemetry, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	res, err := newResource(ctx, o)
	if err != nil {
		return nil, err
	}
	t := &Telemetry{res: res, exporter: "none", tracing: "none"}
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return t, nil
	}
	logger := o.Logger
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("opentelemetry export failed", "error", err)
	}))
	if err := t.setUpTraces(ctx); err != nil {
		return nil, err
	}

	name := strings.TrimSpace(os.Getenv("OTEL_METRICS_EXPORTER"))
	var opts []autoexport.MetricOption
	if name == "" && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") == "" {
		// autoexport would default to OTLP towards localhost; with
		// nothing configured, weir exports nothing instead.
		opts = append(opts, autoexport.WithFallbackMetricReader(func(context.Context) (sdkmetric.Reader, error) { return nil, nil }))
	}
	reader, err := autoexport.NewMetricReader(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: set up the metrics exporter from OTEL_METRICS_EXPORTER=%q: %w (use otlp, prometheus, console or none)", name, err)
	}
	if reader == nil || autoexport.IsNoneMetricReader(reader) {
		return t, nil
	}
	if name == "" {
		name = "otlp"
	}
	t.exporter = name
	t.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithResource(res))
	otel.SetMeterProvider(t.mp)
	return t, nil
}

// setUpTraces starts exporting spans when OTEL_TRACES_EXPORTER names an
// exporter ("otlp" or "console"), or when it is unset and an OTLP endpoint
// is (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).
// Otherwise nothing is exported.
func (t *Telemetry) setUpTraces(ctx context.Context) error {
	name := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))
	var opts []autoexport.SpanOption
	if name == "" && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		opts = append(opts, autoexport.WithFallbackSpanExporter(func(context.Context) (sdktrace.SpanExporter, error) { return nil, nil }))
	}
	exp, err := autoexport.NewSpanExporter(ctx, opts...)
	if err != nil {
		return fmt.Errorf("telemetry: set up the trace exporter from OTEL_TRACES_EXPORTER=%q: %w (use otlp, console or none)", name, err)
	}
	if exp == nil || autoexport.IsNoneSpanExporter(exp) {
		return nil
	}
	if name == "" {
		name = "otlp"
	}
	t.tracing = name
	t.tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(t.res))
	otel.SetTracerProvider(t.tp)
	return nil
}

// TracerProvider is the provider to make tracers from: the exporting one,
// or a no-op one when no traces are exported.
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t.tp == nil {
		return tracenoop.NewTracerProvider()
	}
	return t.tp
}

// TraceExporter names the trace exporter in use ("none" when nothing is
// exported), for a start-up log line.
func (t *Telemetry) TraceExporter() string { return t.tracing }

func newResource(ctx context.Context, o Options) (*resource.Resource, error) {
	opts := []resource.Option{
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessRuntimeName(),
		resource.WithProcessRuntimeVersion(),
	}
	if o.ServiceName != "" {
		opts = append(opts, resource.WithAttributes(semconv.ServiceName(o.ServiceName)))
	}
	if o.ServiceVersion != "" {
		opts = append(opts, resource.WithAttributes(semconv.ServiceVersion(o.ServiceVersion)))
	}
	base, err := resource.New(ctx, opts...)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry: describe the process: %w", err)
	}
	// A detector that found nothing (no host name, say) leaves the rest
	// usable; the environment, though, is the operator's input and must be
	// right.
	env, err := resource.New(ctx, resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTEL_RESOURCE_ATTRIBUTES must be comma-separated key=value pairs with percent-encoded values: %w", err)
	}
	res, err := resource.Merge(base, env)
	if err != nil {
		return nil, fmt.Errorf("telemetry: merge the resource attributes: %w", err)
	}
	return res, nil
}

// MeterProvider is the provider to make instruments from: the exporting
// one, or a no-op one when nothing is exported.
func (t *Telemetry) MeterProvider() metric.MeterProvider {
	if t.mp == nil {
		return noop.NewMeterProvider()
	}
	return t.mp
}

// Exporter names the metrics exporter in use ("none" when nothing is
// exported), for a start-up log line.
func (t *Telemetry) Exporter() string { return t.exporter }

// Resource describes the process as exported (service.name and the rest).
func (t *Telemetry) Resource() *resource.Resource { return t.res }

// Flush exports what has been recorded so far. Lambda handlers call it
// before returning, since the process may be frozen afterwards.
func (t *Telemetry) Flush(ctx context.Context) error {
	if t.tp != nil {
		if err := t.tp.ForceFlush(ctx); err != nil {
			return fmt.Errorf("telemetry: flush traces: %w", err)
		}
	}
	if t.mp == nil {
		return nil
	}
	if err := t.mp.ForceFlush(ctx); err != nil {
		return fmt.Errorf("telemetry: flush metrics: %w", err)
	}
	return nil
}

// Shutdown exports what is left and stops the exporter. It is safe to call
// on a set-up that exports nothing.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t.tp != nil {
		if err := t.tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("telemetry: shut down traces: %w", err)
		}
	}
	if t.mp == nil {
		return nil
	}
	if err := t.mp.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: shut down metrics: %w", err)
	}
	return nil
}

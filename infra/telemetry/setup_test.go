package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/weirstream/weir/infra/telemetry"
)

// clearOTelEnv makes a test independent of the environment it runs in,
// and puts the global meter provider back afterwards.
func clearOTelEnv(t *testing.T) {
	t.Cleanup(func() { otel.SetMeterProvider(noop.NewMeterProvider()) })
	for _, k := range []string{
		"OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
		"OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
	} {
		t.Setenv(k, "")
	}
}

func TestNothingConfiguredExportsNothing(t *testing.T) {
	clearOTelEnv(t)
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "weir-test"})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Exporter() != "none" {
		t.Fatalf("Exporter() = %q, want none", tel.Exporter())
	}
	if _, ok := tel.MeterProvider().(noop.MeterProvider); !ok {
		t.Fatalf("MeterProvider() = %T, want the no-op provider", tel.MeterProvider())
	}
	if err := tel.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestExporterComesFromTheEnvironment(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"console", map[string]string{"OTEL_METRICS_EXPORTER": "console"}, "console"},
		{"explicit none", map[string]string{"OTEL_METRICS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, "none"},
		{"endpoint alone means otlp", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, "otlp"},
		{"sdk disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_METRICS_EXPORTER": "console"}, "none"},
	} {
		t.Run(c.name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			tel, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "weir-test"})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				// An unreachable collector must not make shutdown hang.
				ctx, cancel := context.WithTimeout(context.Background(), 0)
				defer cancel()
				_ = tel.Shutdown(ctx)
			}()
			if tel.Exporter() != c.want {
				t.Fatalf("Exporter() = %q, want %q", tel.Exporter(), c.want)
			}
			_, isNoop := tel.MeterProvider().(noop.MeterProvider)
			if isNoop != (c.want == "none") {
				t.Fatalf("MeterProvider() = %T with exporter %q", tel.MeterProvider(), c.want)
			}
		})
	}
}

func TestUnknownExporterIsAClearError(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_METRICS_EXPORTER", "carrier-pigeon")
	_, err := telemetry.Setup(context.Background(), telemetry.Options{})
	if err == nil || !strings.Contains(err.Error(), "carrier-pigeon") || !strings.Contains(err.Error(), "otlp") {
		t.Fatalf("Setup = %v, want an error naming the value and the choices", err)
	}
}

func TestServiceNameFromTheEnvironmentWins(t *testing.T) {
	clearOTelEnv(t)
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "weir-controller", ServiceVersion: "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	attrs := tel.Resource().Set()
	if v, _ := attrs.Value("service.name"); v.AsString() != "weir-controller" {
		t.Fatalf("service.name = %q, want the default weir-controller", v.AsString())
	}
	if v, _ := attrs.Value("service.version"); v.AsString() != "1.2.3" {
		t.Fatalf("service.version = %q, want 1.2.3", v.AsString())
	}

	t.Setenv("OTEL_SERVICE_NAME", "weir-controller-eu")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging")
	tel, err = telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "weir-controller"})
	if err != nil {
		t.Fatal(err)
	}
	attrs = tel.Resource().Set()
	if v, _ := attrs.Value("service.name"); v.AsString() != "weir-controller-eu" {
		t.Fatalf("service.name = %q, want OTEL_SERVICE_NAME's weir-controller-eu", v.AsString())
	}
	if v, _ := attrs.Value("deployment.environment.name"); v.AsString() != "staging" {
		t.Fatalf("OTEL_RESOURCE_ATTRIBUTES was not applied: %v", attrs.ToSlice())
	}
}

func TestMalformedResourceAttributesAreAClearError(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "no-equals-sign")
	_, err := telemetry.Setup(context.Background(), telemetry.Options{})
	if err == nil || !strings.Contains(err.Error(), "OTEL_RESOURCE_ATTRIBUTES") {
		t.Fatalf("Setup = %v, want an error naming OTEL_RESOURCE_ATTRIBUTES", err)
	}
}

func TestLoggerFormatsAndLevels(t *testing.T) {
	var buf bytes.Buffer
	log, err := telemetry.NewLoggerTo(&buf, "", "")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden")
	log.Info("shown", "job", "job-1")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("default format is not one JSON object per line: %q (%v)", buf.String(), err)
	}
	if rec["msg"] != "shown" || rec["job"] != "job-1" || rec["level"] != "INFO" {
		t.Fatalf("record = %v", rec)
	}

	buf.Reset()
	log, err = telemetry.NewLoggerTo(&buf, "TEXT", "debug")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("detail", "k", "v")
	if out := buf.String(); !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "k=v") {
		t.Fatalf("text debug line = %q", out)
	}

	buf.Reset()
	log, err = telemetry.NewLoggerTo(&buf, "json", "WARN")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("quiet")
	if buf.Len() != 0 || !log.Enabled(context.Background(), slog.LevelError) {
		t.Fatalf("warn level let info through or blocked errors: %q", buf.String())
	}

	if _, err := telemetry.NewLogger("yaml", "info"); err == nil || !strings.Contains(err.Error(), "yaml") {
		t.Fatalf("unknown format: %v", err)
	}
	if _, err := telemetry.NewLogger("json", "loud"); err == nil || !strings.Contains(err.Error(), "loud") || !strings.Contains(err.Error(), "debug") {
		t.Fatalf("unknown level: %v", err)
	}
}

func TestOTLPExportReachesTheCollector(t *testing.T) {
	clearOTelEnv(t)
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")

	tel, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "weir-test"})
	if err != nil {
		t.Fatal(err)
	}
	// Instruments made from the global provider export through the set-up.
	counter, err := otel.GetMeterProvider().Meter("test").Int64Counter("weir.test.count")
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(context.Background(), 1)
	if err := tel.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(paths) == 0 || paths[0] != "POST /v1/metrics application/x-protobuf" {
		t.Fatalf("collector saw %v, want a POST of protobuf to /v1/metrics", paths)
	}
}

func TestSetupExportsTracesOnlyWhenAsked(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "weir-test"})
	if err != nil {
		t.Fatal(err)
	}
	if got := tel.TraceExporter(); got != "none" {
		t.Fatalf("trace exporter with nothing set = %q, want none", got)
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	tel, err = telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "weir-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	if got := tel.TraceExporter(); got != "console" {
		t.Fatalf("trace exporter = %q, want console", got)
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "carrier-pigeon")
	if _, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "weir-test"}); err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_EXPORTER") {
		t.Fatalf("unknown exporter: %v, want an error naming OTEL_TRACES_EXPORTER", err)
	}
}

package telemetry_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/job"
	coretelemetry "github.com/weirstream/weir/core/telemetry"
	"github.com/weirstream/weir/infra/telemetry"
)

func newRecorder(t *testing.T) (*telemetry.Recorder, *sdkmetric.ManualReader, *clock.Fake) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	fake := clock.NewFake(time.Unix(1_700_000_000, 0))
	r, err := telemetry.NewRecorder(mp, nil, fake)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r, reader, fake
}

// point is one data point of any kind, flattened for assertions.
type point struct {
	attrs attribute.Set
	value float64
	count uint64 // histograms
}

func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string][]point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string][]point{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs: dp.Attributes, value: float64(dp.Value)})
				}
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs: dp.Attributes, value: float64(dp.Value)})
				}
			case metricdata.Gauge[float64]:
				for _, dp := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs: dp.Attributes, value: dp.Value})
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs: dp.Attributes, value: dp.Sum, count: dp.Count})
				}
			default:
				t.Fatalf("metric %s has unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return out
}

// find returns the point whose attributes include all of want.
func find(t *testing.T, points []point, want ...attribute.KeyValue) point {
	t.Helper()
	for _, p := range points {
		match := true
		for _, kv := range want {
			if v, ok := p.attrs.Value(kv.Key); !ok || v != kv.Value {
				match = false
				break
			}
		}
		if match {
			return p
		}
	}
	t.Fatalf("no point with %v among %d points", want, len(points))
	return point{}
}

func TestRecorderExportsTransitionsAndCheckpoints(t *testing.T) {
	r, reader, _ := newRecorder(t)
	id := job.ID("job-1")
	r.Transition(id, job.Scheduling, job.Running, 1500*time.Millisecond)
	r.Transition(id, job.Running, job.Recovering, time.Minute)
	r.Restarted(id, 1)
	r.Transition(id, job.Recovering, job.Scheduling, time.Second)
	r.Transition(id, job.Scheduling, job.Running, time.Second)
	r.CheckpointFinished(id, 7, 2*time.Second, true)
	r.CheckpointFinished(id, 8, 30*time.Second, false)

	got := collect(t, reader)
	jobAttr := telemetry.AttrJobID.String("job-1")
	if p := find(t, got[telemetry.MetricTransitions], jobAttr, telemetry.AttrFromState.String("Scheduling"), telemetry.AttrToState.String("Running")); p.value != 2 {
		t.Errorf("Scheduling→Running counted %v times, want 2", p.value)
	}
	if p := find(t, got[telemetry.MetricStateDuration], jobAttr, telemetry.AttrState.String("Running")); p.count != 1 || p.value != 60 {
		t.Errorf("time in Running = %d samples summing %v s, want 1 of 60 s", p.count, p.value)
	}
	if p := find(t, got[telemetry.MetricCheckpoints], jobAttr, telemetry.AttrCheckpointOutcome.String("failed")); p.value != 1 {
		t.Errorf("failed checkpoints = %v, want 1", p.value)
	}
	if p := find(t, got[telemetry.MetricCheckpointDuration], jobAttr, telemetry.AttrCheckpointOutcome.String("completed")); p.count != 1 || p.value != 2 {
		t.Errorf("completed checkpoint durations = %d summing %v s, want 1 of 2 s", p.count, p.value)
	}
	if p := find(t, got[telemetry.MetricCheckpointEpoch], jobAttr); p.value != 7 {
		t.Errorf("last completed epoch = %v, want 7 (epoch 8 failed)", p.value)
	}
	if p := find(t, got[telemetry.MetricRecoveries], jobAttr); p.value != 1 {
		t.Errorf("recoveries = %v, want 1", p.value)
	}
	if p := find(t, got[telemetry.MetricRestarts], jobAttr); p.value != 1 {
		t.Errorf("restarts gauge = %v, want 1", p.value)
	}
}

func TestRecorderGaugesFollowTheLatestReport(t *testing.T) {
	r, reader, fake := newRecorder(t)
	id := job.ID("job-2")
	r.Transition(id, job.Scheduling, job.Running, time.Second)
	r.Metrics(id, coretelemetry.JobMetrics{
		RecordsInRate: 1000, RecordsOutRate: 900, BytesIn: 1_000_000, BytesOut: 500_000,
		Backpressure: 0.25, WatermarkLag: 1500 * time.Millisecond,
	})
	got := collect(t, reader)
	jobAttr := telemetry.AttrJobID.String("job-2")
	if p := find(t, got[telemetry.MetricRecordsRate], jobAttr, telemetry.AttrDirection.String("in")); p.value != 1000 {
		t.Errorf("records in rate = %v, want 1000", p.value)
	}
	if p := find(t, got[telemetry.MetricBackpressure], jobAttr); p.value != 0.25 {
		t.Errorf("backpressure = %v, want 0.25", p.value)
	}
	if p := find(t, got[telemetry.MetricWatermarkLag], jobAttr); p.value != 1.5 {
		t.Errorf("watermark lag = %v s, want 1.5", p.value)
	}
	if p := find(t, got[telemetry.MetricBytesRate], jobAttr, telemetry.AttrDirection.String("in")); p.value != 0 {
		t.Errorf("bytes in rate = %v B/s, want 0 (none reported)", p.value)
	}

	fake.Advance(2 * time.Second)
	r.Metrics(id, coretelemetry.JobMetrics{BytesIn: 1_200_000, BytesOut: 600_000, BytesInRate: 100_000, BytesOutRate: 50_000})
	got = collect(t, reader)
	if p := find(t, got[telemetry.MetricBytesRate], jobAttr, telemetry.AttrDirection.String("in")); p.value != 100_000 {
		t.Errorf("bytes in rate = %v B/s, want the reported 100000", p.value)
	}
	if p := find(t, got[telemetry.MetricBytesRate], jobAttr, telemetry.AttrDirection.String("out")); p.value != 50_000 {
		t.Errorf("bytes out rate = %v B/s, want the reported 50000", p.value)
	}

	// Once the job comes to rest its gauges disappear.
	r.Transition(id, job.Running, job.Stopped, time.Minute)
	got = collect(t, reader)
	for _, name := range []string{telemetry.MetricRecordsRate, telemetry.MetricBackpressure, telemetry.MetricWatermarkLag, telemetry.MetricRestarts} {
		if len(got[name]) != 0 {
			t.Errorf("%s still reported for a stopped job: %v", name, got[name])
		}
	}
}

func TestRecorderImplementsThePort(t *testing.T) {
	var _ coretelemetry.Recorder = (*telemetry.Recorder)(nil)
}

// Transitions and checkpoints become spans that cover what they measured:
// the stay in the state left, the checkpoint from start to end.
func TestRecorderExportsSpans(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	fake := clock.NewFake(time.Unix(1_700_000_000, 0))
	r, err := telemetry.NewRecorder(mp, tp, fake)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	r.Transition("orders", job.Scheduling, job.Running, 3*time.Second)
	r.CheckpointFinished("orders", 7, 2*time.Second, false)
	ended := spans.Ended()
	if len(ended) != 2 {
		t.Fatalf("%d spans, want 2", len(ended))
	}
	state, cp := ended[0], ended[1]
	if state.Name() != telemetry.SpanState || state.EndTime().Sub(state.StartTime()) != 3*time.Second || !state.EndTime().Equal(fake.Now()) {
		t.Fatalf("state span %s from %s to %s, want %s lasting 3s up to now", state.Name(), state.StartTime(), state.EndTime(), telemetry.SpanState)
	}
	if cp.Name() != telemetry.SpanCheckpoint || cp.EndTime().Sub(cp.StartTime()) != 2*time.Second || cp.Status().Code != codes.Error {
		t.Fatalf("checkpoint span %s lasting %s with status %v, want a failed %s lasting 2s", cp.Name(), cp.EndTime().Sub(cp.StartTime()), cp.Status(), telemetry.SpanCheckpoint)
	}
	found := false
	for _, a := range cp.Attributes() {
		if a.Key == telemetry.AttrEpoch && a.Value.AsInt64() == 7 {
			found = true
		}
	}
	if !found {
		t.Fatalf("checkpoint span attributes %v lack the epoch", cp.Attributes())
	}
}

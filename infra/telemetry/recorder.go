package telemetry

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/job"
	coretelemetry "github.com/weirstream/weir/core/telemetry"
)

// Attribute keys on job metrics.
const (
	AttrJobID             = attribute.Key("weir.job.id")
	AttrState             = attribute.Key("weir.job.state")
	AttrFromState         = attribute.Key("weir.job.state.from")
	AttrToState           = attribute.Key("weir.job.state.to")
	AttrCheckpointOutcome = attribute.Key("weir.checkpoint.outcome")
	AttrDirection         = attribute.Key("weir.io.direction")
	AttrEpoch             = attribute.Key("weir.checkpoint.epoch")
)

// Span names the Recorder exports: one span per stay in a state, ended
// when the job leaves it, and one per checkpoint, from its start to its
// completion or failure.
const (
	SpanState      = "weir.job.state"
	SpanCheckpoint = "weir.job.checkpoint"
)

// Metric names the Recorder exports.
const (
	MetricTransitions        = "weir.job.transitions"
	MetricStateDuration      = "weir.job.state.duration"
	MetricCheckpoints        = "weir.job.checkpoints"
	MetricCheckpointDuration = "weir.job.checkpoint.duration"
	MetricCheckpointEpoch    = "weir.job.checkpoint.epoch"
	MetricRecoveries         = "weir.job.recoveries"
	MetricRestarts           = "weir.job.restarts"
	MetricRecordsRate        = "weir.job.records.rate"
	MetricBytesRate          = "weir.job.bytes.rate"
	MetricBackpressure       = "weir.job.backpressure"
	MetricWatermarkLag       = "weir.job.watermark.lag"
)

// Recorder exports the core's job events as OpenTelemetry metrics. It
// implements core/telemetry.Recorder; no call blocks on export.
//
// Events become counters and histograms. The latest state of each live job
// (restart count, throughput, backpressure, watermark lag, last completed
// checkpoint) is observed as gauges at each collection; a job that reaches
// a terminal state stops being observed, so finished jobs leave no stale
// series behind.
type Recorder struct {
	clock  clock.Clock
	tracer trace.Tracer

	transitions        metric.Int64Counter
	stateDuration      metric.Float64Histogram
	checkpoints        metric.Int64Counter
	checkpointDuration metric.Float64Histogram
	recoveries         metric.Int64Counter

	registration metric.Registration

	mu   sync.Mutex
	jobs map[job.ID]*liveJob
}

var _ coretelemetry.Recorder = (*Recorder)(nil)

// liveJob is what the gauges of one job report.
type liveJob struct {
	attrs    attribute.Set
	restarts int

	epoch    int64 // last completed checkpoint, 0 if none
	metrics  coretelemetry.JobMetrics
	reported bool // metrics holds a report
}

// NewRecorder makes the instruments from mp (Telemetry.MeterProvider) and
// the spans from tp (Telemetry.TracerProvider; nil: no spans), and takes
// the time from clk (nil: the real clock). Close it to stop observing.
func NewRecorder(mp metric.MeterProvider, tp trace.TracerProvider, clk clock.Clock) (*Recorder, error) {
	if clk == nil {
		clk = clock.Real{}
	}
	m := mp.Meter("github.com/weirstream/weir/infra/telemetry")
	r := &Recorder{clock: clk, jobs: make(map[job.ID]*liveJob)}
	if tp != nil {
		r.tracer = tp.Tracer("github.com/weirstream/weir/infra/telemetry")
	}
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	var err error

	r.transitions, err = m.Int64Counter(MetricTransitions, metric.WithUnit("{transition}"),
		metric.WithDescription("Job state transitions, by the state left and the state entered"))
	add(err)
	r.stateDuration, err = m.Float64Histogram(MetricStateDuration, metric.WithUnit("s"),
		metric.WithDescription("Time a job spent in a state, recorded when it leaves it"),
		metric.WithExplicitBucketBoundaries(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 6*3600, 24*3600))
	add(err)
	r.checkpoints, err = m.Int64Counter(MetricCheckpoints, metric.WithUnit("{checkpoint}"),
		metric.WithDescription("Checkpoints finished, by outcome (completed or failed)"))
	add(err)
	r.checkpointDuration, err = m.Float64Histogram(MetricCheckpointDuration, metric.WithUnit("s"),
		metric.WithDescription("Time from a checkpoint's start to its completion or failure"),
		metric.WithExplicitBucketBoundaries(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
	add(err)
	r.recoveries, err = m.Int64Counter(MetricRecoveries, metric.WithUnit("{restart}"),
		metric.WithDescription("Entries into Recovering: each counts as a restart of the job"))
	add(err)

	restarts, err := m.Int64ObservableGauge(MetricRestarts, metric.WithUnit("{restart}"),
		metric.WithDescription("Restarts counted against the job's allowance (reset after a healthy period)"))
	add(err)
	epoch, err := m.Int64ObservableGauge(MetricCheckpointEpoch, metric.WithUnit("{epoch}"),
		metric.WithDescription("Epoch of the job's last completed checkpoint"))
	add(err)
	records, err := m.Float64ObservableGauge(MetricRecordsRate, metric.WithUnit("{record}/s"),
		metric.WithDescription("Records per second into the job's sources (in) and out of its sinks (out), over the metrics window"))
	add(err)
	bytes, err := m.Float64ObservableGauge(MetricBytesRate, metric.WithUnit("By/s"),
		metric.WithDescription("Bytes per second in and out, over the metrics window"))
	add(err)
	backpressure, err := m.Float64ObservableGauge(MetricBackpressure, metric.WithUnit("1"),
		metric.WithDescription("Worst backpressure of any subtask, from 0 to 1"))
	add(err)
	lag, err := m.Float64ObservableGauge(MetricWatermarkLag, metric.WithUnit("s"),
		metric.WithDescription("Now minus the job's lowest subtask watermark"))
	add(err)
	for _, e := range errs {
		if e != nil {
			return nil, fmt.Errorf("telemetry: create job instruments: %w", e)
		}
	}

	in := attribute.NewSet(AttrDirection.String("in"))
	out := attribute.NewSet(AttrDirection.String("out"))
	r.registration, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, j := range r.jobs {
			attrs := metric.WithAttributeSet(j.attrs)
			o.ObserveInt64(restarts, int64(j.restarts), attrs)
			if j.epoch > 0 {
				o.ObserveInt64(epoch, j.epoch, attrs)
			}
			if !j.reported {
				continue
			}
			o.ObserveFloat64(records, j.metrics.RecordsInRate, withDirection(j.attrs, in))
			o.ObserveFloat64(records, j.metrics.RecordsOutRate, withDirection(j.attrs, out))
			o.ObserveFloat64(bytes, j.metrics.BytesInRate, withDirection(j.attrs, in))
			o.ObserveFloat64(bytes, j.metrics.BytesOutRate, withDirection(j.attrs, out))
			o.ObserveFloat64(backpressure, j.metrics.Backpressure, attrs)
			o.ObserveFloat64(lag, j.metrics.WatermarkLag.Seconds(), attrs)
		}
		return nil
	}, restarts, epoch, records, bytes, backpressure, lag)
	if err != nil {
		return nil, fmt.Errorf("telemetry: register the job gauges: %w", err)
	}
	return r, nil
}

func withDirection(job, dir attribute.Set) metric.MeasurementOption {
	kvs := append(job.ToSlice(), dir.ToSlice()...)
	return metric.WithAttributeSet(attribute.NewSet(kvs...))
}

// Close stops observing the job gauges.
func (r *Recorder) Close() error { return r.registration.Unregister() }

// live returns the gauges of a job, creating them. r.mu must be held.
func (r *Recorder) live(id job.ID) *liveJob {
	j := r.jobs[id]
	if j == nil {
		j = &liveJob{attrs: attribute.NewSet(AttrJobID.String(string(id)))}
		r.jobs[id] = j
	}
	return j
}

// Transition counts a state change and how long the job spent in from.
func (r *Recorder) Transition(id job.ID, from, to job.State, in time.Duration) {
	ctx := context.Background()
	r.transitions.Add(ctx, 1, metric.WithAttributes(AttrJobID.String(string(id)), AttrFromState.String(string(from)), AttrToState.String(string(to))))
	r.stateDuration.Record(ctx, in.Seconds(), metric.WithAttributes(AttrJobID.String(string(id)), AttrState.String(string(from))))
	r.span(SpanState, in, trace.WithAttributes(AttrJobID.String(string(id)), AttrState.String(string(from)), AttrToState.String(string(to))), spanStatus{})
	r.mu.Lock()
	defer r.mu.Unlock()
	if to.Terminal() {
		delete(r.jobs, id)
		return
	}
	r.live(id)
}

// CheckpointFinished counts a checkpoint's outcome and records its
// duration.
func (r *Recorder) CheckpointFinished(id job.ID, epoch int64, took time.Duration, ok bool) {
	outcome := "failed"
	if ok {
		outcome = "completed"
	}
	attrs := metric.WithAttributes(AttrJobID.String(string(id)), AttrCheckpointOutcome.String(outcome))
	ctx := context.Background()
	r.checkpoints.Add(ctx, 1, attrs)
	r.checkpointDuration.Record(ctx, took.Seconds(), attrs)
	r.span(SpanCheckpoint, took, trace.WithAttributes(AttrJobID.String(string(id)), AttrEpoch.Int64(epoch),
		AttrCheckpointOutcome.String(outcome)), failedIf(!ok))
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if j := r.live(id); epoch > j.epoch {
		j.epoch = epoch
	}
}

// Restarted counts an entry into Recovering; restarts is the job's count
// afterwards.
func (r *Recorder) Restarted(id job.ID, restarts int) {
	r.recoveries.Add(context.Background(), 1, metric.WithAttributes(AttrJobID.String(string(id))))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live(id).restarts = restarts
}

// Metrics keeps a job's latest aggregate for the gauges; its rates are
// the core's, over its metrics window.
func (r *Recorder) Metrics(id job.ID, m coretelemetry.JobMetrics) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j := r.live(id)
	j.metrics = m
	j.reported = true
}

// Forget stops observing a job's gauges: another controller (or none, for
// a job at rest) reports it now, and two series for one job would mislead.
func (r *Recorder) Forget(id job.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.jobs, id)
}

// span records something that lasted d and ended now, as a span.
func (r *Recorder) span(name string, d time.Duration, attrs trace.SpanStartEventOption, status spanStatus) {
	if r.tracer == nil {
		return
	}
	end := r.clock.Now()
	_, sp := r.tracer.Start(context.Background(), name, trace.WithTimestamp(end.Add(-d)), attrs)
	if status.failed {
		sp.SetStatus(codes.Error, status.reason)
	}
	sp.End(trace.WithTimestamp(end))
}

type spanStatus struct {
	failed bool
	reason string
}

func failedIf(failed bool) spanStatus {
	if failed {
		return spanStatus{failed: true, reason: "checkpoint failed"}
	}
	return spanStatus{}
}

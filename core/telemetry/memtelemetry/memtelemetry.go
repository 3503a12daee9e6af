// Package memtelemetry is a telemetry.Recorder that keeps every call, so
// unit tests of the core can assert what was reported.
package memtelemetry

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/telemetry"
)

// Transition is one recorded state change.
type Transition struct {
	JobID    job.ID
	From, To job.State
	In       time.Duration // time spent in From
}

// Checkpoint is one recorded checkpoint outcome.
type Checkpoint struct {
	JobID job.ID
	Epoch int64
	Took  time.Duration
	OK    bool
}

// Restart is one recorded restart.
type Restart struct {
	JobID    job.ID
	Restarts int
}

// Metrics is one recorded metrics report.
type Metrics struct {
	JobID   job.ID
	Metrics telemetry.JobMetrics
}

// Recorder is safe for concurrent use; its recording methods never block.
type Recorder struct {
	mu          sync.Mutex
	transitions []Transition
	checkpoints []Checkpoint
	restarts    []Restart
	metrics     []Metrics
	forgotten   []job.ID
	messages    map[telemetry.MessageOutcome]int
	changed     chan struct{} // closed (and replaced) on every call
}

var _ telemetry.Recorder = (*Recorder)(nil)

// New returns an empty recorder.
func New() *Recorder { return &Recorder{changed: make(chan struct{})} }

func (r *Recorder) record(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn()
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Recorder) Transition(id job.ID, from, to job.State, in time.Duration) {
	r.record(func() { r.transitions = append(r.transitions, Transition{id, from, to, in}) })
}

func (r *Recorder) CheckpointFinished(id job.ID, epoch int64, took time.Duration, ok bool) {
	r.record(func() { r.checkpoints = append(r.checkpoints, Checkpoint{id, epoch, took, ok}) })
}

func (r *Recorder) Restarted(id job.ID, restarts int) {
	r.record(func() { r.restarts = append(r.restarts, Restart{id, restarts}) })
}

func (r *Recorder) Metrics(id job.ID, m telemetry.JobMetrics) {
	r.record(func() { r.metrics = append(r.metrics, Metrics{id, m}) })
}

// WorkerMessages counts received worker messages by outcome.
func (r *Recorder) WorkerMessages(outcome telemetry.MessageOutcome, n int) {
	if n == 0 {
		return
	}
	r.record(func() {
		if r.messages == nil {
			r.messages = map[telemetry.MessageOutcome]int{}
		}
		r.messages[outcome] += n
	})
}

// Messages returns how many worker messages had the outcome.
func (r *Recorder) Messages(outcome telemetry.MessageOutcome) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.messages[outcome]
}

// Forget records that the job's gauges were dropped.
func (r *Recorder) Forget(id job.ID) {
	r.record(func() { r.forgotten = append(r.forgotten, id) })
}

// Forgotten returns the jobs whose gauges were dropped, in order.
func (r *Recorder) Forgotten() []job.ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]job.ID(nil), r.forgotten...)
}

// Transitions returns the recorded transitions, oldest first.
func (r *Recorder) Transitions() []Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.transitions)
}

// Checkpoints returns the recorded checkpoint outcomes, oldest first.
func (r *Recorder) Checkpoints() []Checkpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.checkpoints)
}

// Restarts returns the recorded restarts, oldest first.
func (r *Recorder) Restarts() []Restart {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.restarts)
}

// AllMetrics returns the recorded metrics reports, oldest first.
func (r *Recorder) AllMetrics() []Metrics {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.metrics)
}

// States returns the path a job took: the state it started from, then each
// state it entered, in order (nil if it never moved).
func (r *Recorder) States(id job.ID) []job.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	var path []job.State
	for _, t := range r.transitions {
		if t.JobID != id {
			continue
		}
		if path == nil {
			path = append(path, t.From)
		}
		path = append(path, t.To)
	}
	return path
}

// LastMetrics returns the latest metrics reported for a job.
func (r *Recorder) LastMetrics(id job.ID) (telemetry.JobMetrics, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.metrics) - 1; i >= 0; i-- {
		if r.metrics[i].JobID == id {
			return r.metrics[i].Metrics, true
		}
	}
	return telemetry.JobMetrics{}, false
}

// Reset forgets everything recorded so far.
func (r *Recorder) Reset() {
	r.record(func() {
		r.transitions, r.checkpoints, r.restarts, r.metrics = nil, nil, nil, nil
	})
}

// AwaitTransition waits until a transition of the job into the given state
// has been recorded (at any time, before the call included) and returns it.
func (r *Recorder) AwaitTransition(ctx context.Context, id job.ID, to job.State) (Transition, error) {
	for {
		r.mu.Lock()
		for _, t := range r.transitions {
			if t.JobID == id && t.To == to {
				r.mu.Unlock()
				return t, nil
			}
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return Transition{}, fmt.Errorf("memtelemetry: waiting for job %s to enter %s: %w", id, to, ctx.Err())
		case <-changed:
		}
	}
}

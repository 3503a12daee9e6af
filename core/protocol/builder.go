package protocol

import (
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/weirstream/weir/core/job"
)

// DefaultLinger is how long urgent news waits for more to join it, so that
// a burst (every subtask of a worker finishing the same checkpoint) leaves in
// one envelope rather than in one each.
const DefaultLinger = 100 * time.Millisecond

// BuilderOptions tune a Builder; zero values take the defaults.
type BuilderOptions struct {
	// Heartbeat is the longest time between two envelopes, and the shortest
	// between two that carry nothing urgent (DefaultHeartbeatInterval).
	Heartbeat time.Duration
	// Linger is how long urgent news may wait for more (DefaultLinger).
	Linger time.Duration
}

// Builder gathers what one worker has to tell the controller during one run
// and cuts it into envelopes: one per heartbeat interval, sooner when
// urgent news is waiting (see Kind.Urgent). Tasks call Add and SetMetrics
// from any goroutine; one sending loop waits until Due (or Wake), calls
// Flush and sends each body to the worker queue.
type Builder struct {
	jobID     job.ID
	runID     int64
	workerID  string
	heartbeat time.Duration
	linger    time.Duration
	wake      chan struct{}

	mu          sync.Mutex
	seq         uint64
	events      []Event
	metrics     []TaskMetrics
	metricIndex map[subtaskKey]int
	lastFlush   time.Time
	urgentSince time.Time // zero while nothing urgent waits
}

// NewBuilder returns a Builder for one worker in one run of a job. It
// checks the identity the same way Decode will.
func NewBuilder(jobID job.ID, runID int64, workerID string, opts BuilderOptions) (*Builder, error) {
	if opts.Heartbeat == 0 {
		opts.Heartbeat = DefaultHeartbeatInterval
	}
	if opts.Linger == 0 {
		opts.Linger = DefaultLinger
	}
	if opts.Heartbeat < 0 || opts.Linger < 0 {
		return nil, fmt.Errorf("builder: heartbeat %s and linger %s must not be negative", opts.Heartbeat, opts.Linger)
	}
	probe := Envelope{V: Version, JobID: jobID, RunID: runID, WorkerID: workerID, Seq: 1, SentAt: time.Unix(0, 0), Heartbeat: &Heartbeat{}}
	if err := probe.Validate(); err != nil {
		return nil, err
	}
	return &Builder{
		jobID: jobID, runID: runID, workerID: workerID,
		heartbeat: opts.Heartbeat, linger: opts.Linger,
		wake:        make(chan struct{}, 1),
		metricIndex: map[subtaskKey]int{},
	}, nil
}

// Add queues an event for the next envelope. It returns the validation
// error, if any, at once, so a bad event is found where it is made. Urgent
// events bring the next envelope forward and signal Wake.
func (b *Builder) Add(now time.Time, ev Event) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, ev)
	if ev.Kind.Urgent() && b.urgentSince.IsZero() {
		b.urgentSince = now
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// SetMetrics records one subtask's current counters for the next envelope,
// replacing what was set for it since the last Flush. Metrics are not kept
// across flushes: set them for every running subtask before each one.
func (b *Builder) SetMetrics(m TaskMetrics) error {
	if err := m.validate(); err != nil {
		return within("metrics", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k := subtaskKey{m.Operator, m.Subtask}
	if i, ok := b.metricIndex[k]; ok {
		b.metrics[i] = m
		return nil
	}
	if len(b.metrics) >= MaxMetrics {
		return fieldErr("metrics", "more than %d subtasks on one worker: protocol v%d cannot report them all", MaxMetrics, Version)
	}
	b.metricIndex[k] = len(b.metrics)
	b.metrics = append(b.metrics, m)
	return nil
}

// Due is when the next envelope should be sent: a heartbeat interval after
// the last one, or a linger after the first urgent event waiting, whichever
// is sooner. Before the first Flush it is the zero time: send at once.
func (b *Builder) Due() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lastFlush.IsZero() {
		return time.Time{}
	}
	due := b.lastFlush.Add(b.heartbeat)
	if !b.urgentSince.IsZero() {
		if u := b.urgentSince.Add(b.linger); u.Before(due) {
			due = u
		}
	}
	return due
}

// Wake receives a value when urgent news arrives, so a sending loop asleep
// until the old Due can look again.
func (b *Builder) Wake() <-chan struct{} { return b.wake }

// Pending is how many events wait for the next Flush.
func (b *Builder) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.events)
}

// Flush returns the encoded envelopes that carry everything gathered since
// the last Flush, and starts gathering afresh. It returns one envelope,
// carrying a heartbeat even when there is nothing else to say, unless the
// news is too much for one (MaxEvents, MaxMetrics, MaxEnvelopeBytes); then
// it returns several, in order, each with its own seq. Send them all.
func (b *Builder) Flush(now time.Time) ([][]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	envs, err := b.pack(now)
	if err != nil {
		return nil, err
	}
	bodies := make([][]byte, len(envs))
	for i, env := range envs {
		if bodies[i], err = Encode(env); err != nil {
			return nil, fmt.Errorf("builder: envelope %d of %d: %w", i+1, len(envs), err)
		}
	}
	// Only now that every body is ready is the news taken off the queue.
	b.seq += uint64(len(envs))
	b.events = nil
	b.metrics = nil
	clear(b.metricIndex)
	b.lastFlush = now
	b.urgentSince = time.Time{}
	return bodies, nil
}

// pack spreads the waiting metrics and events over as few envelopes as the
// limits allow, keeping their order.
func (b *Builder) pack(now time.Time) ([]*Envelope, error) {
	newEnvelope := func(n int) *Envelope {
		return &Envelope{V: Version, JobID: b.jobID, RunID: b.runID, WorkerID: b.workerID,
			Seq: b.seq + uint64(n) + 1, SentAt: now, Heartbeat: &Heartbeat{}}
	}
	// The largest an envelope is before any metric or event: the longest
	// seq, plus the brackets of both lists.
	head, err := json.Marshal(&Envelope{V: Version, JobID: b.jobID, RunID: b.runID, WorkerID: b.workerID,
		Seq: math.MaxUint64, SentAt: now, Heartbeat: &Heartbeat{}})
	if err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	}
	budget := MaxEnvelopeBytes - len(head) - len(`,"metrics":[]`) - len(`,"events":[]`)

	envs := []*Envelope{newEnvelope(0)}
	cur, used := envs[0], 0
	// fit makes room in the current envelope for an item of size n (plus
	// its comma), starting another envelope when the current one is full.
	fit := func(n int, full bool) {
		if full || used+n+1 > budget {
			cur = newEnvelope(len(envs))
			envs = append(envs, cur)
			used = 0
		}
		used += n + 1
	}
	for _, m := range b.metrics {
		data, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("builder: metrics of %s/%d: %w", m.Operator, m.Subtask, err)
		}
		fit(len(data), len(cur.Heartbeat.Metrics) >= MaxMetrics)
		cur.Heartbeat.Metrics = append(cur.Heartbeat.Metrics, m)
	}
	for _, ev := range b.events {
		data, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("builder: %s event: %w", ev.Kind, err)
		}
		fit(len(data), len(cur.Events) >= MaxEvents)
		cur.Events = append(cur.Events, ev)
	}
	return envs, nil
}

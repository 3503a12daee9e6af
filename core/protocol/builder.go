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

// Builder keeps what one worker has to tell the controller during one run
// and cuts it into v2 envelopes: one per heartbeat interval, sooner when a
// subtask's state changed (see SetTask). Every envelope carries the whole
// state, so nothing the controller needs depends on one message arriving.
// Tasks call SetTask and Add from any goroutine; one sending loop waits
// until Due (or Wake), calls Flush and sends each body to the worker queue.
type Builder struct {
	jobID     job.ID
	runID     int64
	workerID  string
	slots     int
	heartbeat time.Duration
	linger    time.Duration
	wake      chan struct{}

	mu          sync.Mutex
	seq         uint64
	tasks       []Task // kept across flushes: the worker's current state
	taskIndex   map[subtaskKey]int
	events      []Event
	lastFlush   time.Time
	urgentSince time.Time // zero while nothing urgent waits
}

// NewBuilder returns a Builder for one worker, offering slots task slots, in
// one run of a job. It checks the identity the same way Decode will.
func NewBuilder(jobID job.ID, runID int64, workerID string, slots int, opts BuilderOptions) (*Builder, error) {
	if opts.Heartbeat == 0 {
		opts.Heartbeat = DefaultHeartbeatInterval
	}
	if opts.Linger == 0 {
		opts.Linger = DefaultLinger
	}
	if opts.Heartbeat < 0 || opts.Linger < 0 {
		return nil, fmt.Errorf("builder: heartbeat %s and linger %s must not be negative", opts.Heartbeat, opts.Linger)
	}
	probe := Envelope{V: Version, JobID: jobID, RunID: runID, WorkerID: workerID, Seq: 1, SentAt: time.Unix(0, 0), Slots: slots}
	if err := probe.Validate(); err != nil {
		return nil, err
	}
	return &Builder{
		jobID: jobID, runID: runID, workerID: workerID, slots: slots,
		heartbeat: opts.Heartbeat, linger: opts.Linger,
		wake:      make(chan struct{}, 1),
		taskIndex: map[subtaskKey]int{},
	}, nil
}

// SetTask records one subtask's current state and counters; every envelope
// from now on carries them until the next SetTask for the subtask. A change
// the controller waits on or must act on (the state, the newest checkpointed
// or committed epoch) brings the next envelope forward and signals Wake;
// new counters alone wait for the heartbeat. A state or epoch that moves
// back is refused: the controller would ignore it.
func (b *Builder) SetTask(now time.Time, t Task) error {
	return b.setTask(now, t, true)
}

// SetTaskLater records a subtask's state like SetTask, but never brings
// the next envelope forward: for news the controller can wait for until
// the next heartbeat (a commit acknowledged well before the next
// checkpoint is due, say).
func (b *Builder) SetTaskLater(t Task) error {
	return b.setTask(time.Time{}, t, false)
}

func (b *Builder) setTask(now time.Time, t Task, urgentChanges bool) error {
	if err := t.Validate(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k := subtaskKey{t.Operator, t.Subtask}
	i, known := b.taskIndex[k]
	prev := Task{State: Scheduled}
	if known {
		prev = b.tasks[i]
	}
	if err := forward(&prev, &t); err != nil {
		return err
	}
	urgent := urgentChanges && (t.State != prev.State || t.Checkpointed != prev.Checkpointed || t.Committed != prev.Committed)
	if known {
		b.tasks[i] = t
	} else {
		// A bound well above any real worker, so a runaway caller fails
		// here rather than sending dozens of envelopes per heartbeat.
		if len(b.tasks) >= 16*MaxTasks {
			return fieldErr("task", "more than %d subtasks on one worker: too many to report", 16*MaxTasks)
		}
		b.taskIndex[k] = len(b.tasks)
		b.tasks = append(b.tasks, t)
	}
	if urgent {
		b.markUrgent(now)
	}
	return nil
}

// forward checks that a subtask's new state does not go back on the old.
func forward(prev, next *Task) error {
	if rank(next.State) < rank(prev.State) || (prev.State == Finished || prev.State == Failed) && next.State != prev.State {
		return fieldErr("task.state", "%s[%d] cannot move from %s to %s: a subtask's state only moves forward", next.Operator, next.Subtask, prev.State, next.State)
	}
	if next.Checkpointed < prev.Checkpointed {
		return fieldErr("task.checkpointed", "%s[%d] went back from epoch %d to %d: report the newest epoch completed", next.Operator, next.Subtask, prev.Checkpointed, next.Checkpointed)
	}
	if next.Committed < prev.Committed {
		return fieldErr("task.committed", "%s[%d] went back from epoch %d to %d: report the newest epoch committed", next.Operator, next.Subtask, prev.Committed, next.Committed)
	}
	return nil
}

func rank(s TaskState) int {
	switch s {
	case Running:
		return 1
	case Finished, Failed:
		return 2
	}
	return 0
}

// Task returns the state last set for a subtask, if any.
func (b *Builder) Task(op string, subtask int) (Task, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i, ok := b.taskIndex[subtaskKey{op, subtask}]
	if !ok {
		return Task{}, false
	}
	return b.tasks[i], true
}

// Add queues an event (checkpoint_event or error: the only kinds of v2) for
// the next envelope. It returns the validation error, if any, at once, so a
// bad event is found where it is made. Events are informational: they wait
// for the next envelope.
func (b *Builder) Add(ev Event) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	if !ev.Kind.InV2() {
		return fieldErr("event.kind", "%s is an event of protocol v1 only: in v2 %s (Builder.SetTask)", ev.Kind, v2Instead(ev.Kind))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, ev)
	return nil
}

// markUrgent brings the next envelope forward; b.mu is held.
func (b *Builder) markUrgent(now time.Time) {
	if !b.urgentSince.IsZero() {
		return
	}
	b.urgentSince = now
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Due is when the next envelope should be sent: a heartbeat interval after
// the last one, or a linger after the first urgent change waiting,
// whichever is sooner. Before the first Flush it is the zero time: send at
// once, which registers the worker.
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

// Flush returns the encoded envelopes that carry the worker's whole state
// and the events gathered since the last Flush, and starts gathering events
// afresh (the state stays). It returns one envelope unless the state and
// news are too much for one (MaxTasks, MaxEvents, MaxEnvelopeBytes); then
// it returns several, in order, each with its own seq and the worker's
// slots. Send them all.
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
	// Only now that every body is ready are the events taken off the queue.
	b.seq += uint64(len(envs))
	b.events = nil
	b.lastFlush = now
	b.urgentSince = time.Time{}
	return bodies, nil
}

// pack spreads the tasks and the waiting events over as few envelopes as
// the limits allow, keeping their order.
func (b *Builder) pack(now time.Time) ([]*Envelope, error) {
	newEnvelope := func(n int) *Envelope {
		return &Envelope{V: Version, JobID: b.jobID, RunID: b.runID, WorkerID: b.workerID,
			Seq: b.seq + uint64(n) + 1, SentAt: now, Slots: b.slots}
	}
	// The largest an envelope is before any task or event: the longest
	// seq, plus the brackets of both lists.
	head, err := json.Marshal(&Envelope{V: Version, JobID: b.jobID, RunID: b.runID, WorkerID: b.workerID,
		Seq: math.MaxUint64, SentAt: now, Slots: b.slots})
	if err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	}
	budget := MaxEnvelopeBytes - len(head) - len(`,"tasks":[]`) - len(`,"events":[]`)

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
	for _, t := range b.tasks {
		data, err := json.Marshal(t)
		if err != nil {
			return nil, fmt.Errorf("builder: state of %s/%d: %w", t.Operator, t.Subtask, err)
		}
		fit(len(data), len(cur.Tasks) >= MaxTasks)
		cur.Tasks = append(cur.Tasks, t)
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

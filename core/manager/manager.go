// Package manager runs every active job while this controller holds the
// lease: it polls the active index for new jobs and config versions (one
// query per poll, level-based), runs one state.Runner per job, and
// dispatches worker messages from the inbox to the jobs they belong to.
package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/controller"
	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/core/inbox"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/state"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/core/telemetry"
)

// DefaultPollInterval is how often the active index is read (the source
// system polls its database every 500 ms).
const DefaultPollInterval = 500 * time.Millisecond

// Deps are the ports a Manager drives.
type Deps struct {
	Store     store.Store
	Inbox     inbox.Inbox
	Fleet     fleet.Launcher
	Clock     clock.Clock
	Telemetry telemetry.Recorder
	Log       *slog.Logger
	Settings  controller.Settings
	// PollInterval defaults to DefaultPollInterval.
	PollInterval time.Duration
	// Rand returns a number in [0, 1) for jitter; nil uses math/rand.
	Rand func() float64
}

// Manager runs the jobs. It is reusable: each Run is one tenure as leader.
type Manager struct {
	d Deps
}

// New checks the dependencies and returns a Manager.
func New(d Deps) (*Manager, error) {
	if d.Store == nil || d.Inbox == nil || d.Fleet == nil {
		return nil, errors.New("manager: store, inbox and fleet are required")
	}
	if d.Clock == nil {
		d.Clock = clock.Real{}
	}
	if d.Telemetry == nil {
		d.Telemetry = telemetry.Nop{}
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Settings == (controller.Settings{}) {
		d.Settings = controller.DefaultSettings()
	}
	if err := d.Settings.Validate(); err != nil {
		return nil, fmt.Errorf("manager: %w", err)
	}
	if d.PollInterval == 0 {
		d.PollInterval = DefaultPollInterval
	}
	if d.PollInterval < 0 {
		return nil, fmt.Errorf("manager: poll interval %s is negative", d.PollInterval)
	}
	return &Manager{d: d}, nil
}

// tenure is one Run: the jobs it runs and the goroutines it owns.
type tenure struct {
	d     Deps
	fence store.Fence
	log   *slog.Logger
	group *errgroup.Group
	ctx   context.Context

	mu   sync.Mutex
	jobs map[job.ID]*running

	acks chan []inbox.Delivery
}

type running struct {
	runner *state.Runner
	// version is the newest config version handed to the runner.
	version int64
	done    chan struct{}
}

// Run acts as leader under fence until ctx ends (nil) or a job shows that
// another controller has taken over (state.ErrLostOwnership). Every
// goroutine it starts has ended when it returns.
func (m *Manager) Run(ctx context.Context, fence store.Fence) error {
	g, gctx := errgroup.WithContext(ctx)
	t := &tenure{
		d:     m.d,
		fence: fence,
		log:   m.d.Log.With("fence", int64(fence)),
		group: g,
		ctx:   gctx,
		jobs:  map[job.ID]*running{},
		acks:  make(chan []inbox.Delivery, 64),
	}
	t.log.Info("controller acting as leader")
	g.Go(func() error { return t.pollLoop(gctx) })
	g.Go(func() error { return t.receiveLoop(gctx) })
	g.Go(func() error { return t.ackLoop(gctx) })
	err := g.Wait()
	if errors.Is(err, state.ErrLostOwnership) {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// lookup finds the runner of a job this tenure runs.
func (t *tenure) lookup(id job.ID) (*running, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.jobs[id]
	return r, ok
}

func (t *tenure) pollLoop(ctx context.Context) error {
	ticker := t.d.Clock.NewTicker(t.d.PollInterval)
	defer ticker.Stop()
	for {
		if err := t.poll(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			t.log.Warn("polling the active jobs failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
		}
	}
}

// poll reads the active index once and brings every listed job's runner
// up to date. It is level-based: whatever was missed is seen next time.
func (t *tenure) poll(ctx context.Context) error {
	refs, err := t.d.Store.ActiveJobs(ctx)
	if err != nil {
		return fmt.Errorf("read the active jobs: %w", err)
	}
	var errs []error
	for _, ref := range refs {
		r, ok := t.lookup(ref.ID)
		if ok && ref.ConfigVersion <= r.version {
			continue
		}
		cfg, err := t.d.Store.GetConfig(ctx, ref.ID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("read config of job %s: %w", ref.ID, err))
			continue
		}
		if ok {
			if err := r.runner.Config(ctx, cfg); err != nil {
				return err
			}
			t.setVersion(ref.ID, cfg.Version)
			continue
		}
		if err := t.start(ctx, cfg); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (t *tenure) setVersion(id job.ID, v int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.jobs[id]; ok && v > r.version {
		r.version = v
	}
}

// start launches the runner of a job this tenure does not run yet.
func (t *tenure) start(ctx context.Context, cfg job.Config) error {
	st, err := t.d.Store.GetStatus(ctx, cfg.JobID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("read status of job %s: %w", cfg.JobID, err)
	}
	if err := cfg.Validate(); err != nil {
		// The config API validates; a stored config that does not is left
		// alone rather than acted on.
		t.log.Error("stored config is invalid; job not run", "job", string(cfg.JobID), "version", cfg.Version, "err", err)
		return nil
	}
	m := state.NewMachine(state.Deps{
		Store:     t.d.Store,
		Fleet:     t.d.Fleet,
		Clock:     t.d.Clock,
		Telemetry: t.d.Telemetry,
		Log:       t.log,
		Settings:  t.d.Settings,
		Fence:     t.fence,
		Rand:      t.d.Rand,
	}, cfg, st)
	park := func(ctx context.Context, id job.ID, v int64) error { return t.d.Store.Park(ctx, t.fence, id, v) }
	r := &running{runner: state.NewRunner(m, park), version: cfg.Version, done: make(chan struct{})}
	t.mu.Lock()
	t.jobs[cfg.JobID] = r
	t.mu.Unlock()
	t.group.Go(func() error {
		defer close(r.done)
		err := r.runner.Run(ctx)
		t.mu.Lock()
		delete(t.jobs, cfg.JobID)
		t.mu.Unlock()
		if errors.Is(err, state.ErrLostOwnership) {
			t.log.Error("another controller owns a job: giving up leadership", "job", string(cfg.JobID), "err", err)
			return err
		}
		if err != nil && ctx.Err() == nil {
			// Transient trouble taking the job over: the next poll retries.
			t.log.Warn("job runner stopped; the next poll restarts it", "job", string(cfg.JobID), "err", err)
		}
		return nil
	})
	return nil
}

// receiveLoop takes worker messages from the inbox and hands each to its
// job. Malformed messages and unknown protocol versions are rejected for
// the dead-letter queue with one log line; messages for jobs this
// controller does not run are acknowledged and dropped (they can only be
// from runs that have ended).
func (t *tenure) receiveLoop(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		ds, err := t.d.Inbox.Receive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
			t.log.Warn("receiving worker messages failed; will retry", "retry_in", backoff.String(), "err", err)
			if !t.sleep(ctx, backoff) {
				return nil
			}
			continue
		}
		backoff = 0
		t.dispatch(ctx, ds)
	}
}

func (t *tenure) sleep(ctx context.Context, d time.Duration) bool {
	tm := t.d.Clock.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C():
		return true
	}
}

// dispatch hands a batch to the jobs; the batch's handled messages are
// acknowledged together once the last of them is done.
func (t *tenure) dispatch(ctx context.Context, ds []inbox.Delivery) {
	b := &batch{acks: t.acks}
	b.pending.Store(1) // dispatch's own hold, released at the end
	var rejects []inbox.Delivery
	for _, d := range ds {
		env, err := protocol.Decode(d.Body)
		if err != nil {
			t.log.Warn("worker message rejected for the dead-letter queue",
				"message_id", d.ID, "receives", d.Receives, "err", err)
			rejects = append(rejects, d)
			continue
		}
		r, ok := t.lookup(env.JobID)
		if !ok {
			t.log.Debug("worker message for a job not running here; dropped", "job", string(env.JobID), "run_id", env.RunID, "worker", env.WorkerID)
			b.add(d)
			b.done(d)
			continue
		}
		b.add(d)
		d := d
		if err := r.runner.Message(ctx, state.Inbound{Env: env, Done: func() { b.done(d) }}); err != nil {
			return // ctx ended: unacknowledged messages come back later
		}
	}
	if len(rejects) > 0 {
		if err := t.d.Inbox.Reject(ctx, rejects); err != nil && ctx.Err() == nil {
			t.log.Warn("could not hand rejected messages back", "count", len(rejects), "err", err)
		}
	}
	b.release()
}

// batch counts the messages of one receive still being handled.
type batch struct {
	acks    chan<- []inbox.Delivery
	pending atomic.Int64
	mu      sync.Mutex
	handled []inbox.Delivery
}

func (b *batch) add(inbox.Delivery) { b.pending.Add(1) }

func (b *batch) done(d inbox.Delivery) {
	b.mu.Lock()
	b.handled = append(b.handled, d)
	b.mu.Unlock()
	b.release()
}

func (b *batch) release() {
	if b.pending.Add(-1) != 0 {
		return
	}
	b.mu.Lock()
	ds := b.handled
	b.mu.Unlock()
	if len(ds) > 0 {
		// Never blocks the job that finished the batch for long: the
		// ack loop drains the channel, and an unacknowledged message is
		// only delivered again.
		select {
		case b.acks <- ds:
		default:
		}
	}
}

// ackLoop deletes handled messages in batches.
func (t *tenure) ackLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ds := <-t.acks:
			if err := t.d.Inbox.Ack(ctx, ds); err != nil && ctx.Err() == nil {
				t.log.Warn("acknowledging worker messages failed; they will be delivered again", "count", len(ds), "err", err)
			}
		}
	}
}

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
	"runtime"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/controller"
	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/core/inbox"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/state"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/core/telemetry"
)

// DefaultPollInterval is how often the active index is read (the source
// system polls its database every 500 ms).
const DefaultPollInterval = 500 * time.Millisecond

// DefaultAckLinger is how long handled messages may wait for company
// before a delete call that would carry fewer than inbox.MaxBatch of them.
// A delete call is billed the same for one message as for ten, and a
// handled message only has to be deleted before its visibility time-out.
const DefaultAckLinger = 500 * time.Millisecond

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
	// Receivers is how many loops receive and decode worker messages at
	// once (default GOMAXPROCS).
	Receivers int
	// MailboxLimit bounds the worker messages waiting for one job
	// (state.DefaultMailboxLimit if zero).
	MailboxLimit int
	// Rand returns a number in [0, 1) for jitter; nil uses math/rand.
	Rand func() float64
	// AckLinger is how long handled messages wait, when fewer than a full
	// batch are waiting, for more to share the delete call
	// (DefaultAckLinger if zero; negative: never wait).
	AckLinger time.Duration
	// OnTick, if set, is told how late each job's progress tick ran
	// (state.Runner.OnTick); it is called from every job's goroutine.
	OnTick func(late time.Duration)
	// OnTakenOver, if set, is told when a job's loop has taken the job
	// over (claimed it, read it, adopted or resumed its run); it is called
	// from every job's goroutine.
	OnTakenOver func(id job.ID)
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
	if d.Receivers == 0 {
		d.Receivers = runtime.GOMAXPROCS(0)
	}
	if d.Receivers < 0 {
		return nil, fmt.Errorf("manager: Receivers is %d; it must be at least 1 (0 for one per CPU)", d.Receivers)
	}
	if d.MailboxLimit < 0 {
		return nil, fmt.Errorf("manager: MailboxLimit is %d; it must be at least 1 (0 for the default, %d)", d.MailboxLimit, state.DefaultMailboxLimit)
	}
	if d.AckLinger == 0 {
		d.AckLinger = DefaultAckLinger
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

	mu   sync.Mutex
	jobs map[job.ID]*jobSlot

	// polled is closed after the first poll, so no worker message is
	// received before the tenure knows which jobs it runs.
	polled chan struct{}
	acks   *ackQueue
	// bulk bounds the bulk take-overs in flight (takeOver).
	bulk chan struct{}
}

// Run acts as leader under fence until ctx ends (nil) or a job shows that
// another controller has taken over (state.ErrLostOwnership). It owns the
// inbox's receiving for exactly that long, so a standby holds no messages.
// Every goroutine it starts has ended when it returns.
func (m *Manager) Run(ctx context.Context, fence store.Fence) error {
	g, gctx := errgroup.WithContext(ctx)
	t := &tenure{
		d:      m.d,
		fence:  fence,
		log:    m.d.Log.With("fence", int64(fence)),
		group:  g,
		jobs:   map[job.ID]*jobSlot{},
		polled: make(chan struct{}),
		acks:   newAckQueue(),
		bulk:   make(chan struct{}, takeoverParallel),
	}
	t.log.Info("controller acting as leader")
	if r, ok := m.d.Inbox.(inbox.Runner); ok {
		g.Go(func() error { return r.Run(gctx) })
	}
	g.Go(func() error { return t.pollLoop(gctx) })
	// Several receive loops decode in parallel: decoding is most of the
	// receive path's work, and the mailboxes and ack queue are safe for
	// concurrent use. Order between messages does not matter (SQS gives
	// none, and each worker's sequence numbers sort it out).
	for range m.d.Receivers {
		g.Go(func() error { return t.receiveLoop(gctx) })
	}
	g.Go(func() error { return t.ackLoop(gctx) })
	err := g.Wait()
	t.flushAcks(ctx)
	t.forgetAll()
	if errors.Is(err, state.ErrLostOwnership) {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (t *tenure) sleep(ctx context.Context, d time.Duration) bool {
	return clock.Sleep(ctx, t.d.Clock, d)
}

package state

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// ParkFunc takes a job at rest off the active index (store.Index.Park under
// the runner's fence).
type ParkFunc func(ctx context.Context, id job.ID, configVersion int64) error

// Runner is the one goroutine that drives a job's Machine. It takes config
// versions and worker messages from the job's Mailbox and runs the progress
// tick, and it holds the tick's cadence under any message rate: it stops
// taking messages the moment a tick is due, runs the tick, and only then
// goes on. (A fresh sleep per loop pass, or a select that can keep choosing
// messages, would let a flood of heartbeats delay liveness checks,
// checkpoints and the TTL.)
//
// Ticks fall on a grid of the progress interval. While the job is quiet
// (the Machine's QuietUntil: nothing due on time alone, nothing being
// retried) the loop lets grid points lapse and sleeps until the first one
// at or after the quiet time ends, at most IdleTicks intervals, so
// progress is still checked level-triggered at least that often. After
// handling a message or a config it asks again: what a worker reported
// (the last report of a checkpoint) makes the next grid point after the
// last tick due, or the present moment if that point has passed, so it is
// acted on as soon as under a fixed cadence; a failure or the sources' end
// makes the present moment due (Machine.Urgent); a plain heartbeat costs
// no tick. Ten thousand quiet jobs then wake a fifth
// as often as with one ticker each.
//
// A message is taken from the mailbox only while the Machine can act on it:
// while a state's entry is retried or a decided move is unsaved, messages
// wait in the mailbox (bounded there), and are acknowledged only once
// applied or judged stale.
type Runner struct {
	m        *Machine
	mb       *Mailbox
	interval time.Duration
	park     ParkFunc

	// configRetryAt and parkRetryAt hold back a failed config read or park.
	configRetryAt, parkRetryAt time.Time
	configFailures, parkFails  int

	mu    sync.Mutex
	state job.State
	ticks int

	// onTick, if set, is told how late each tick ran (see OnTick).
	onTick func(late time.Duration)
}

// OnTick sets a function told, after each tick, how long after its due
// time the tick started: benchmarks and metrics watch the cadence with it.
// It runs on the job's goroutine, so it must be quick. Set it before Run.
func (r *Runner) OnTick(fn func(late time.Duration)) { r.onTick = fn }

// NewRunner makes a runner for m that reads mb. park, if not nil, takes the
// job off the active index once it is at rest; Run then returns.
func NewRunner(m *Machine, mb *Mailbox, park ParkFunc) *Runner {
	return &Runner{
		m:        m,
		mb:       mb,
		interval: m.c.Settings.ProgressInterval,
		park:     park,
		state:    m.State(),
	}
}

// State is the job's state as of the runner's last step.
func (r *Runner) State() job.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// Ticks counts the ticks run, for tests of the cadence.
func (r *Runner) Ticks() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ticks
}

// IdleTicks bounds the sleep of a quiet job's loop, in progress intervals:
// it is how late a deadline no state names can be noticed.
const IdleTicks = 5

// ErrParked is returned by Run when the job came to rest and was taken off
// the active index: what is left in its mailbox is stale.
var ErrParked = errors.New("job at rest and parked")

// Run drives the job until ctx ends (nil), the job comes to rest and is
// parked (ErrParked), or the controller loses ownership of it
// (ErrLostOwnership).
func (r *Runner) Run(ctx context.Context) error {
	defer r.m.c.closeController()
	clk := r.m.c.Clock
	if err := r.m.Start(ctx); err != nil {
		return err
	}
	r.publish(false)
	// next is the first grid point after the last tick; due is when the
	// next tick runs: next, or a later grid point while the job is quiet.
	next := clk.Now().Add(r.interval)
	due := next
	timer := clk.NewTimer(r.interval)
	defer timer.Stop()
	for {
		if r.m.AtRest() {
			if parked, err := r.tryPark(ctx); parked || err != nil {
				return err
			}
		}
		news, err := r.refreshConfig(ctx)
		if err == nil {
			var n int
			n, err = r.takeMessages(ctx, due)
			news = news || n > 0
		}
		now := clk.Now()
		if news {
			// What was handled may have brought something on: ask again,
			// never putting the tick off. A failure is acted on at once.
			if r.m.Urgent() {
				due = now
			} else if d := r.stretch(next, now); d.Before(due) {
				due = d
				if due.Before(now) {
					due = now
				}
			}
		}
		ticked := false
		if err == nil && !now.Before(due) {
			if r.onTick != nil {
				r.onTick(now.Sub(due))
			}
			err = r.m.Tick(ctx)
			ticked = true
			now = clk.Now()
			for !next.After(now) {
				next = next.Add(r.interval)
			}
			due = r.stretch(next, now)
		}
		r.publish(ticked)
		if err != nil {
			return err
		}
		if r.m.Accepting() && r.mb.Len() > 0 {
			// Messages left because a tick was due: go on without waiting.
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		timer.Reset(max(due.Sub(now), 0))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C():
		case <-r.mb.Wake():
		}
	}
}

// stretch returns when the tick after the grid point next should run: next
// itself (at once, if it has passed) unless the Machine is quiet past it,
// else the first grid point at or after the quiet time's end, at most
// IdleTicks intervals from now.
func (r *Runner) stretch(next, now time.Time) time.Time {
	until := r.m.QuietUntil(now)
	if r.mb.Announced() > r.m.c.Config.Version && r.configRetryAt.Before(until) {
		until = r.configRetryAt // a config read to retry
	}
	if limit := now.Add(IdleTicks * r.interval); until.After(limit) {
		until = limit
	}
	due := next
	for due.Before(until) {
		due = due.Add(r.interval)
	}
	return due
}

// takeMessages hands waiting envelopes to the Machine until none is left,
// the Machine cannot take more, or the next tick is due, and says how many
// it handed over.
func (r *Runner) takeMessages(ctx context.Context, due time.Time) (int, error) {
	clk := r.m.c.Clock
	n := 0
	for r.m.Accepting() && clk.Now().Before(due) {
		in, ok := r.mb.Next()
		if !ok {
			return n, nil
		}
		err := r.m.Message(ctx, in.Env)
		in.done()
		n++
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// refreshConfig reads the job's config when a newer version was announced
// and hands it to the Machine, reporting whether it did. A failed read is
// retried with back-off; it never stops the job.
func (r *Runner) refreshConfig(ctx context.Context) (bool, error) {
	c := r.m.c
	if r.mb.Announced() <= c.Config.Version || c.Now().Before(r.configRetryAt) {
		return false, nil
	}
	cfg, err := c.Store.GetConfig(ctx, c.Config.JobID)
	if err != nil {
		if ctx.Err() != nil {
			return false, nil
		}
		r.configFailures++
		wait := Backoff(r.configFailures, c.Settings.BackoffInitial, c.Settings.BackoffMax, c.Rand)
		r.configRetryAt = c.Now().Add(wait)
		c.Logger().Warn("reading a new config version failed; will retry", "announced", r.mb.Announced(),
			"retry_in", wait.String(), "err", err)
		return true, nil // the retry is due on time: tick at the cadence
	}
	r.configFailures, r.configRetryAt = 0, time.Time{}
	if err := cfg.Validate(); err != nil {
		// The config API validates; a stored config that does not is left
		// alone rather than acted on.
		c.Logger().Error("stored config is invalid; version ignored", "version", cfg.Version, "err", err)
		c.Config.Version = max(c.Config.Version, cfg.Version)
		return true, nil
	}
	return true, r.m.Config(ctx, cfg)
}

func (r *Runner) publish(ticked bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state = r.m.State()
	if ticked {
		r.ticks++
	}
}

// tryPark takes the resting job off the index. A conflict means a new
// config version arrived: it is on its way, so keep running. Other
// failures are retried with back-off.
func (r *Runner) tryPark(ctx context.Context) (bool, error) {
	c := r.m.c
	if r.park == nil || c.Now().Before(r.parkRetryAt) {
		return false, nil
	}
	st := r.m.Status()
	err := r.park(ctx, st.JobID, c.Config.Version)
	switch {
	case err == nil:
		c.Logger().Info("job at rest; parked", "state", st.State)
		return true, ErrParked
	case errors.Is(err, store.ErrConflict):
		// A newer config version is stored: read it now rather than wait
		// for the index to show it.
		r.mb.Announce(c.Config.Version + 1)
		return false, nil
	case errors.Is(err, store.ErrFenced):
		return true, r.m.lostOr(err)
	case ctx.Err() != nil:
		return true, nil
	default:
		r.parkFails++
		wait := Backoff(r.parkFails, c.Settings.BackoffInitial, c.Settings.BackoffMax, c.Rand)
		r.parkRetryAt = c.Now().Add(wait)
		c.Logger().Warn("could not park job at rest; will retry", "retry_in", wait.String(), "err", err)
		return false, nil
	}
}

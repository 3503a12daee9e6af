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
}

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
	// The first deadline is read before the ticker starts, so the ticker
	// never fires before it (else every tick would wait a whole interval).
	next := clk.Now().Add(r.interval)
	ticker := clk.NewTicker(r.interval)
	defer ticker.Stop()
	for {
		if r.m.AtRest() {
			if parked, err := r.tryPark(ctx); parked || err != nil {
				return err
			}
		}
		err := r.refreshConfig(ctx)
		if err == nil {
			err = r.takeMessages(ctx, next)
		}
		ticked := false
		if err == nil && !clk.Now().Before(next) {
			err = r.m.Tick(ctx)
			ticked = true
			now := clk.Now()
			for !next.After(now) {
				next = next.Add(r.interval)
			}
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
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
		case <-r.mb.Wake():
		}
	}
}

// takeMessages hands waiting envelopes to the Machine until none is left,
// the Machine cannot take more, or the next tick is due.
func (r *Runner) takeMessages(ctx context.Context, next time.Time) error {
	clk := r.m.c.Clock
	for r.m.Accepting() && clk.Now().Before(next) {
		in, ok := r.mb.Next()
		if !ok {
			return nil
		}
		err := r.m.Message(ctx, in.Env)
		in.done()
		if err != nil {
			return err
		}
	}
	return nil
}

// refreshConfig reads the job's config when a newer version was announced
// and hands it to the Machine. A failed read is retried with back-off; it
// never stops the job.
func (r *Runner) refreshConfig(ctx context.Context) error {
	c := r.m.c
	if r.mb.Announced() <= c.Config.Version || c.Now().Before(r.configRetryAt) {
		return nil
	}
	cfg, err := c.Store.GetConfig(ctx, c.Config.JobID)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		r.configFailures++
		wait := Backoff(r.configFailures, c.Settings.BackoffInitial, c.Settings.BackoffMax, c.Rand)
		r.configRetryAt = c.Now().Add(wait)
		c.Logger().Warn("reading a new config version failed; will retry", "announced", r.mb.Announced(),
			"retry_in", wait.String(), "err", err)
		return nil
	}
	r.configFailures, r.configRetryAt = 0, time.Time{}
	if err := cfg.Validate(); err != nil {
		// The config API validates; a stored config that does not is left
		// alone rather than acted on.
		c.Logger().Error("stored config is invalid; version ignored", "version", cfg.Version, "err", err)
		c.Config.Version = max(c.Config.Version, cfg.Version)
		return nil
	}
	return r.m.Config(ctx, cfg)
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

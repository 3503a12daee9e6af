package state

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/store"
)

// Inbound is a worker envelope on its way to a job. Done, if set, is called
// once the job has handled it, so the message can be acknowledged.
type Inbound struct {
	Env  *protocol.Envelope
	Done func()
}

// Runner is the one goroutine that drives a job's Machine. It multiplexes
// config versions, worker messages and the progress tick, and holds the
// tick's cadence under any message rate: after every message it checks the
// clock, and runs an overdue tick before taking the next message. (A fresh
// sleep per loop pass, or a select that can keep choosing messages, would
// let a flood of heartbeats delay liveness checks, checkpoints and the TTL.)
type Runner struct {
	m        *Machine
	interval time.Duration
	configs  chan job.Config
	msgs     chan Inbound
	park     func(ctx context.Context, id job.ID, configVersion int64) error

	mu    sync.Mutex
	state job.State
	ticks int
}

// NewRunner makes a runner for m. park takes a job at rest off the active
// index (store.Index.Park); when it succeeds Run returns.
func NewRunner(m *Machine, park func(ctx context.Context, id job.ID, configVersion int64) error) *Runner {
	return &Runner{
		m:        m,
		interval: m.c.Settings.ProgressInterval,
		configs:  make(chan job.Config, 4),
		msgs:     make(chan Inbound),
		park:     park,
		state:    m.State(),
	}
}

// Config hands the runner a config version; it blocks until taken or ctx ends.
func (r *Runner) Config(ctx context.Context, cfg job.Config) error {
	select {
	case r.configs <- cfg:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Message hands the runner a worker envelope; it blocks until taken or ctx
// ends.
func (r *Runner) Message(ctx context.Context, in Inbound) error {
	select {
	case r.msgs <- in:
		return nil
	case <-ctx.Done():
		return ctx.Err()
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

// Run drives the job until ctx ends, the job comes to rest and is parked,
// or the controller loses ownership of it (ErrLostOwnership).
func (r *Runner) Run(ctx context.Context) error {
	defer r.m.c.closeController()
	clk := r.m.c.Clock
	if err := r.m.Start(ctx); err != nil {
		return err
	}
	r.publish(false)
	ticker := clk.NewTicker(r.interval)
	defer ticker.Stop()
	next := clk.Now().Add(r.interval)
	for {
		if r.m.AtRest() {
			if done, err := r.tryPark(ctx); done || err != nil {
				return err
			}
		}
		var err error
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
		case cfg := <-r.configs:
			err = r.m.Config(ctx, cfg)
		case in := <-r.msgs:
			err = r.m.Message(ctx, in.Env)
			if in.Done != nil {
				in.Done()
			}
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
	}
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
// config version arrived: it is on its way, so keep running.
func (r *Runner) tryPark(ctx context.Context) (bool, error) {
	if r.park == nil {
		return false, nil
	}
	st := r.m.Status()
	err := r.park(ctx, st.JobID, r.m.c.Config.Version)
	switch {
	case err == nil:
		r.m.c.log.Info("job at rest; parked", "state", st.State)
		return true, nil
	case errors.Is(err, store.ErrConflict):
		return false, nil
	case ctx.Err() != nil:
		return true, nil
	default:
		r.m.c.log.Warn("could not park job at rest; will retry", "err", err)
		return false, nil
	}
}

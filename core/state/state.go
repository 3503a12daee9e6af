// Package state is the job state machine: the state contract, the table of
// allowed transitions (edges.go), one file per state, and the Machine that
// drives them — persisting every transition, retrying in place with
// back-off and escalating to Recovering. States never save themselves.
package state

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/controller"
	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/core/telemetry"
)

// State is one state of a job. Handlers return the next state (a zero
// Transition to stay) or an error, which the Machine classifies: see
// errors.go.
type State interface {
	Name() job.State
	// Enter runs when the job moves into the state. If it fails it is
	// retried with back-off, so it must be safe to run again.
	Enter(ctx context.Context, c *Context) (Transition, error)
	// Config is called with every config version the job has not acted on.
	// Compare it with c.Status (what the job runs with), not with an
	// earlier config: versions written while no controller ran are seen
	// only once, as the latest.
	Config(ctx context.Context, c *Context, cfg job.Config) (Transition, error)
	// Message handles one worker envelope of the current run.
	Message(ctx context.Context, c *Context, env *protocol.Envelope) (Transition, error)
	// Tick is called at the progress cadence.
	Tick(ctx context.Context, c *Context) (Transition, error)
}

// Adoptable is a state that can carry on a run an earlier controller left
// in it, with the run's workers as they are, instead of being entered
// afresh (which would start a new run). Adopt replaces Enter for the state
// the job is found in at take-over; c.Controller is the adopted run's.
type Adoptable interface {
	State
	Adopt(ctx context.Context, c *Context) (Transition, error)
}

// adoptLive carries on a state whose run is up: every worker's heartbeat
// clock starts now, then the state is entered as usual (Enter of these
// states only sets up bookkeeping).
func adoptLive(ctx context.Context, c *Context, s State) (Transition, error) {
	c.Controller.WatchAllWorkers()
	return s.Enter(ctx, c)
}

// Transition names the state to move to and why. A zero Transition stays.
type Transition struct {
	Next   State
	Reason string
}

func stay() (Transition, error) { return Transition{}, nil }

func to(s State, reason string) (Transition, error) {
	return Transition{Next: s, Reason: reason}, nil
}

// Deps are what every state of every job needs.
type Deps struct {
	Store     store.Store
	Fleet     fleet.Launcher
	Clock     clock.Clock
	Telemetry telemetry.Recorder
	Log       *slog.Logger
	Settings  controller.Settings
	Fence     store.Fence
	// Rand returns a number in [0, 1) for jitter; nil uses math/rand.
	Rand func() float64
}

// Context is one job's world as the states see it.
type Context struct {
	Deps
	Config job.Config
	Status job.Status
	// Controller is the JobController of the current run; nil while no run
	// is active.
	Controller *controller.JobController
	// EnteredAt is when the current state was entered.
	EnteredAt time.Time

	dirty bool
	// log is the job's logger for run logRun: every line names the job,
	// the run and (through Deps.Log) the controller's fence.
	log    *slog.Logger
	logRun int64
}

// Now is the clock's time.
func (c *Context) Now() time.Time { return c.Clock.Now() }

// MarkDirty asks the Machine to persist the status after this handler.
func (c *Context) MarkDirty() { c.dirty = true }

// Logger is the job's logger: Deps.Log with the job and its current run.
func (c *Context) Logger() *slog.Logger {
	if c.log == nil || c.logRun != c.Status.RunID {
		base := c.Log
		if base == nil {
			base = slog.New(slog.DiscardHandler)
		}
		c.log, c.logRun = base.With("job", string(c.Config.JobID), "run_id", c.Status.RunID), c.Status.RunID
	}
	return c.log
}

// controllerDeps builds the dependencies of a new JobController.
func (c *Context) controllerDeps() controller.Deps {
	return controller.Deps{
		Store:     c.Store,
		Clock:     c.Clock,
		Telemetry: c.Telemetry,
		Log:       c.Log, // the controller names the job and run itself
		Fence:     c.Fence,
		Settings:  c.Settings,
		Rand:      c.Rand,
	}
}

// closeController ends the current run's controller, if any.
func (c *Context) closeController() {
	if c.Controller != nil {
		c.Controller.Close()
		c.Controller = nil
	}
}

// teardown stops the current run's controller and every worker of the job
// up to the current run. Safe to repeat.
func (c *Context) teardown(ctx context.Context) error {
	c.closeController()
	if err := c.Fleet.Stop(ctx, c.Status.JobID, c.Status.RunID); err != nil {
		return errors.Join(errors.New("tear down workers"), err)
	}
	return nil
}

// handleMessage gives an envelope to the run's controller; what it refuses
// is logged and dropped (worker messages never stop the loop).
func (c *Context) handleMessage(env *protocol.Envelope) {
	if c.Controller == nil {
		return
	}
	if err := c.Controller.HandleMessage(env); err != nil && !errors.Is(err, controller.ErrOtherRun) {
		c.Logger().Warn("worker message ignored", "worker", env.WorkerID, "seq", env.Seq, "err", err)
	}
}

// base gives the behaviour most states share: worker messages go to the
// controller, and a force stop is accepted whatever else is happening.
type base struct{}

func (base) Message(_ context.Context, c *Context, env *protocol.Envelope) (Transition, error) {
	c.handleMessage(env)
	return stay()
}

func (base) Tick(context.Context, *Context) (Transition, error) { return stay() }

func (base) Config(_ context.Context, c *Context, cfg job.Config) (Transition, error) {
	if cfg.Stop == job.StopForce {
		return to(&Stopping{Mode: job.StopForce}, "force stop requested")
	}
	return stay()
}

// stopPath is the state a stop request leads to from a running job.
func stopPath(mode job.StopMode) State {
	switch mode {
	case job.StopCheckpoint:
		return &CheckpointStopping{}
	case job.StopGraceful, job.StopImmediate, job.StopForce:
		return &Stopping{Mode: mode}
	}
	return nil
}

// layoutChanged reports whether cfg asks for another task layout than the
// one the job was scheduled with.
func layoutChanged(cfg job.Config, scheduled map[string]int) bool {
	if scheduled == nil {
		return false
	}
	for _, op := range cfg.Spec.Operators {
		if cfg.EffectiveParallelism(op) != scheduled[op.ID] {
			return true
		}
	}
	return false
}

// ttlDeadline is when the job's TTL runs out, if it has one and has started.
func ttlDeadline(c *Context) (time.Time, bool) {
	if c.Config.TTL <= 0 || c.Status.StartedAt.IsZero() {
		return time.Time{}, false
	}
	return c.Status.StartedAt.Add(c.Config.TTL), true
}

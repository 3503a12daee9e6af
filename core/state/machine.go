package state

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/weirstream/weir/core/controller"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/store"
)

// ErrLostOwnership is returned by the Machine once a write showed that
// another controller owns the job (a newer fence, or a status it did not
// write). The Machine acts no more; its owner should drop it.
var ErrLostOwnership = errors.New("lost ownership of the job")

// Machine drives one job through its states. It is not safe for concurrent
// use: one goroutine (the Runner) feeds it config versions, worker messages
// and ticks.
type Machine struct {
	c   *Context
	cur State

	// pending is a transition decided but not yet persisted; deferred: a
	// config version arrived meanwhile and is due to the next state.
	pending  *Transition
	deferred bool
	// entering: the current state's Enter has not yet succeeded.
	entering bool
	// failures counts consecutive failed steps of the current state;
	// retryAt is when the next attempt may run.
	failures int
	retryAt  time.Time
	lastErr  error
	lost     error

	// claimed is what a bulk take-over read of the job under its claim
	// (UseClaimed), until Start has used it.
	claimed *store.JobState
	// onStarted, if set, is called once Start has taken the job over.
	onStarted func()
}

// UseClaimed gives the Machine what a bulk take-over (store.Takeover) read
// of the job after claiming it under the Machine's fence: Start then
// neither claims nor reads the job again. Call it before Start.
func (m *Machine) UseClaimed(js store.JobState) { m.claimed = &js }

// OnStarted sets a function called once Start has taken the job over (for
// take-over benchmarks). Set it before Start.
func (m *Machine) OnStarted(fn func()) { m.onStarted = fn }

// NewMachine prepares a machine for a job whose config was just read. st
// is replaced by the status Start reads once it has claimed the job. Start
// must be called before anything else.
func NewMachine(d Deps, cfg job.Config, st job.Status) *Machine {
	if st.JobID == "" {
		st.JobID = cfg.JobID
	}
	if st.State == "" {
		st.State = job.Created
	}
	if d.Rand == nil {
		d.Rand = rand.Float64
	}
	c := &Context{Deps: d, Config: cfg, Status: st}
	return &Machine{c: c}
}

// State is the name of the current state.
func (m *Machine) State() job.State { return m.c.Status.State }

// Status is the job's status as last persisted or about to be.
func (m *Machine) Status() job.Status { return m.c.Status }

// Context exposes the job's context (for tests and the Runner).
func (m *Machine) Context() *Context { return m.c }

// AtRest reports whether the job sits in a terminal state with nothing left
// to do and has acted on the given config version.
func (m *Machine) AtRest() bool {
	return m.c.Status.State.Terminal() && m.pending == nil && !m.entering &&
		m.c.Status.ConfigVersion >= m.c.Config.Version
}

// Start takes the job over. It first claims the job under this
// controller's fence, so no earlier leader can write for it any more, and
// only then reads the status it continues from (or starts from what a bulk
// take-over claimed and read: UseClaimed). A run an earlier controller
// left active is adopted as it stands (same run id, same workers) where its
// state allows (see adoptable); otherwise the stored state is resumed,
// which for an active run means a new one. A status Start changed is
// persisted under the fence before anything else, then a config version
// the job has not acted on is reacted to.
func (m *Machine) Start(ctx context.Context) error {
	claimed := m.claimed
	m.claimed = nil
	stored, err := m.claim(ctx, claimed)
	if err != nil {
		return err
	}
	m.c.EnteredAt = m.c.Now()
	adopted, err := m.adopt(ctx, claimed)
	if err != nil {
		return err
	}
	changed := !stored
	if adopted != nil {
		m.cur = adopted
	} else {
		m.cur = resume(m.c)
		if name := m.c.Status.State; m.cur.Name() != name {
			m.c.Logger().Info("resuming job", "stored_state", name, "state", m.cur.Name())
			if m.cur.Name() == job.Scheduling {
				newRun(&m.c.Status, m.c.Now())
			}
			m.c.Status.State = m.cur.Name()
			m.c.Status.TransitionedAt = m.c.Now()
			changed = true
		}
	}
	// A status Start changed is persisted under the fence before anything
	// acts on it. One taken over as stored is not rewritten: the claim
	// already put this controller's fence on it, and an unchanged write
	// would cost a request per job at every take-over.
	if changed {
		if err := m.persist(ctx); err != nil {
			m.c.closeController()
			return m.lostOr(err)
		}
	}
	if m.onStarted != nil {
		m.onStarted()
	}
	m.entering = true
	if adopted != nil {
		m.step(ctx, func() (Transition, error) {
			tr, err := adopted.Adopt(ctx, m.c)
			if err == nil {
				m.entering = false
			}
			return tr, err
		}, true)
	} else {
		m.step(ctx, func() (Transition, error) { return m.enter(ctx) }, true)
	}
	if m.lost != nil {
		return m.lost
	}
	return m.Config(ctx, m.c.Config)
}

// claim fences the job's items under this controller and reads the status
// as it stands after that: a write the predecessor made before the claim
// is seen, one after it is refused. A job claimed in bulk comes with what
// was read of it (store.Takeover.ClaimJobs claims only what is unchanged
// since the read, so that is the state after the claim). stored says
// whether a status was stored.
func (m *Machine) claim(ctx context.Context, claimed *store.JobState) (stored bool, err error) {
	id := m.c.Config.JobID
	var st job.Status
	if claimed != nil {
		st, stored = claimed.Status, claimed.HasStatus
	} else {
		if err := m.c.Store.Claim(ctx, m.c.Fence, id); err != nil {
			return false, m.lostOr(fmt.Errorf("claim job %s: %w", id, err))
		}
		st, err = m.c.Store.GetStatus(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return false, fmt.Errorf("read status of job %s: %w", id, err)
		default:
			stored = true
		}
	}
	if !stored {
		st = job.Status{JobID: id, State: job.Created}
	}
	if st.State == "" {
		st.State = job.Created
	}
	m.c.Status = st
	return stored, nil
}

// adopt rebuilds the controller of the run the job's stored state left
// active, if that state can carry it on. A run that cannot be adopted (its
// command record is of another run) gives nil, so a new run is started; a
// store error is returned, so the take-over is retried rather than the
// job restarted. A job claimed in bulk is adopted from what was read.
func (m *Machine) adopt(ctx context.Context, claimed *store.JobState) (Adoptable, error) {
	s := adoptable(m.c)
	if s == nil {
		return nil, nil
	}
	var (
		ctl *controller.JobController
		err error
	)
	switch {
	case claimed == nil:
		ctl, err = controller.AdoptRun(ctx, m.c.controllerDeps(), m.c.Config, m.c.Status)
	case !claimed.HasCommands:
		err = fmt.Errorf("read the command record of job %s: %w", m.c.Status.JobID, store.ErrNotFound)
	default:
		ctl, err = controller.AdoptRead(ctx, m.c.controllerDeps(), m.c.Config, m.c.Status, controller.RunRecords{
			Commands: claimed.Commands, Checkpoints: claimed.Checkpoints, MaxEpoch: claimed.MaxEpoch,
		})
	}
	if errors.Is(err, controller.ErrNotAdoptable) {
		m.c.Logger().Warn("run not adopted; a new run starts", "state", m.c.Status.State, "err", err)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("adopt run %d of job %s: %w", m.c.Status.RunID, m.c.Status.JobID, err)
	}
	m.c.Controller = ctl
	m.c.Logger().Info("job adopted", "state", s.Name())
	return s, nil
}

// adoptable is the state that carries on the run a job was left in, or nil
// where the stored state cannot (Recovering and a force restart were
// tearing the run down; a stop path is finished by resume).
func adoptable(c *Context) Adoptable {
	switch c.Status.State {
	case job.Scheduling:
		return &Scheduling{}
	case job.Running:
		return &Running{}
	case job.Finishing:
		return &Finishing{}
	case job.CheckpointStopping:
		return &CheckpointStopping{}
	case job.Rescaling:
		return &Rescaling{}
	case job.Restarting:
		if c.Config.RestartMode != job.RestartForce {
			return &Restarting{Mode: job.RestartSafe}
		}
	}
	return nil
}

// resume picks the state to continue in when the stored one is not
// adopted.
func resume(c *Context) State {
	switch c.Status.State {
	case job.Created:
		return &Created{}
	case job.Stopping, job.CheckpointStopping:
		mode := c.Config.Stop
		if mode != job.StopForce {
			mode = job.StopImmediate
		}
		return &Stopping{Mode: mode}
	case job.Failing:
		f := job.Failure{Message: "failed under an earlier controller", Domain: job.DomainInternal}
		if c.Status.Failure != nil {
			f = *c.Status.Failure
		}
		return &Failing{Failure: f}
	case job.Failed:
		return &Failed{}
	case job.Stopped:
		return &Stopped{}
	case job.Finished:
		return &Finished{}
	default:
		// Scheduling, Running, Finishing, Rescaling, Restarting, Recovering
		// whose run could not be adopted: start a new one.
		return &Scheduling{}
	}
}

// Config reacts to a config version the job has not acted on.
func (m *Machine) Config(ctx context.Context, cfg job.Config) error {
	if m.lost != nil {
		return m.lost
	}
	if cfg.Version < m.c.Config.Version {
		return nil
	}
	m.c.Config = cfg
	if cfg.Version <= m.c.Status.ConfigVersion {
		return nil
	}
	m.c.Status.ConfigVersion = cfg.Version
	m.c.MarkDirty()
	m.c.Logger().Info("config version seen", "version", cfg.Version, "state", m.cur.Name(), "stop", cfg.Stop)
	if m.pending != nil {
		// A decided move is completed first; the state it leads to is
		// then given this config (see Tick).
		m.deferred = true
		m.flush(ctx)
		return m.lost
	}
	// Even a state whose Enter is being retried hears the config: a
	// force stop must not wait for a launcher or store to recover.
	m.step(ctx, func() (Transition, error) { return m.cur.Config(ctx, m.c, cfg) }, false)
	return m.lost
}

// Accepting reports whether the Machine can act on a worker message now.
// While a state's entry is retried or a decided move is unsaved it cannot:
// the run the message speaks of may not be set up yet, so the message
// waits (in the job's mailbox) instead of being dropped.
func (m *Machine) Accepting() bool {
	return m.lost == nil && !m.entering && m.pending == nil
}

// Message hands a worker envelope to the current state. Call it only while
// Accepting. Envelopes of other runs are dropped here, with a log line:
// they can never affect the current run.
func (m *Machine) Message(ctx context.Context, env *protocol.Envelope) error {
	if m.lost != nil {
		return m.lost
	}
	if env.RunID != m.c.Status.RunID {
		m.c.Logger().Info("worker message of another run dropped", "worker", env.WorkerID,
			"message_run_id", env.RunID, "seq", env.Seq)
		return nil
	}
	if !m.Accepting() {
		return nil
	}
	m.step(ctx, func() (Transition, error) { return m.cur.Message(ctx, m.c, env) }, false)
	return m.lost
}

// quieter is a state that can tell when its periodic work is next due on
// time alone (see Machine.QuietUntil).
type quieter interface {
	QuietUntil(c *Context, now time.Time) time.Time
}

// QuietUntil is when a tick next has something to do if no message or
// config arrives first: now while an entry, a move or a failed step is
// being retried, or for a state that cannot tell; else what the state
// says. The Runner lets ticks before it lapse.
// Urgent says a tick now would act on something a worker just reported (a
// failure, the sources' end), so the Runner runs it at once rather than at
// the next grid point. A step being retried or a move being saved waits
// for its own time.
func (m *Machine) Urgent() bool {
	if m.lost != nil || m.pending != nil || m.entering || m.deferred || m.failures > 0 {
		return false
	}
	return m.c.Controller != nil && m.c.Controller.Urgent()
}

func (m *Machine) QuietUntil(now time.Time) time.Time {
	if m.lost != nil || m.pending != nil || m.entering || m.deferred || m.failures > 0 || m.c.dirty {
		return now
	}
	q, ok := m.cur.(quieter)
	if !ok {
		return now
	}
	return q.QuietUntil(m.c, now)
}

// Tick runs the current state's periodic work, or the pending retry once
// its back-off has passed.
func (m *Machine) Tick(ctx context.Context) error {
	if m.lost != nil {
		return m.lost
	}
	if m.c.Now().Before(m.retryAt) {
		return nil
	}
	switch {
	case m.pending != nil:
		tr := *m.pending
		m.pending = nil
		m.move(ctx, tr)
		if m.deferred && m.pending == nil && m.lost == nil {
			m.deferred = false
			m.step(ctx, func() (Transition, error) { return m.cur.Config(ctx, m.c, m.c.Config) }, false)
		}
	case m.entering:
		m.step(ctx, func() (Transition, error) { return m.enter(ctx) }, true)
	default:
		m.step(ctx, func() (Transition, error) { return m.cur.Tick(ctx, m.c) }, true)
	}
	return m.lost
}

func (m *Machine) enter(ctx context.Context) (Transition, error) {
	tr, err := m.cur.Enter(ctx, m.c)
	if err == nil {
		m.entering = false
	}
	return tr, err
}

// step runs one handler and deals with its outcome. Only a periodic or
// entry step that succeeds ends a run of failures: a worker message
// handled in between says nothing about the step being retried.
func (m *Machine) step(ctx context.Context, f func() (Transition, error), retried bool) {
	tr, err := f()
	if err != nil {
		m.fail(ctx, err)
		return
	}
	if retried {
		m.failures, m.lastErr = 0, nil
	}
	if tr.Next != nil {
		m.move(ctx, tr)
		return
	}
	m.flush(ctx)
}

// flush persists the status if a handler changed it.
func (m *Machine) flush(ctx context.Context) {
	if !m.c.dirty {
		return
	}
	if err := m.persist(ctx); err != nil {
		if classify(err) == classLostOwnership {
			m.fail(ctx, err)
			return
		}
		m.retryPersist(err)
	}
}

// retryPersist backs off after a failed status write. It never escalates:
// with the store unreachable there is nothing better to do than to keep
// the decided state and try again. The status stays dirty.
func (m *Machine) retryPersist(err error) {
	m.failures++
	m.lastErr = err
	wait := Backoff(m.failures, m.c.Settings.BackoffInitial, m.c.Settings.BackoffMax, m.c.Rand)
	m.retryAt = m.c.Now().Add(wait)
	m.c.Logger().Warn("status write failed; retrying", "state", m.c.Status.State, "attempt", m.failures, "retry_in", wait, "err", err)
}

// fail classifies a handler's error and retries, escalates or gives up.
func (m *Machine) fail(ctx context.Context, err error) {
	switch classify(err) {
	case classLostOwnership:
		m.lost = m.lostOr(err)
		m.c.Logger().Warn("stopped acting for job: another controller owns it", "err", err)
		m.c.closeController()
	case classFatal:
		m.move(ctx, Transition{Next: &Failing{Failure: failureOf(err)}, Reason: err.Error()})
	case classRecover:
		m.recoverFrom(ctx, err)
	default:
		m.failures++
		m.lastErr = err
		limit := m.c.Settings.RetryLimit
		if l, ok := m.cur.(interface{ retryLimit(Deps) int }); ok {
			limit = l.retryLimit(m.c.Deps)
		}
		if m.failures >= limit {
			m.c.Logger().Error("retries exhausted", "state", m.cur.Name(), "attempts", m.failures, "err", err)
			m.escalate(ctx, fmt.Errorf("%s failed %d times in a row: %w", m.cur.Name(), m.failures, err))
			return
		}
		wait := Backoff(m.failures, m.c.Settings.BackoffInitial, m.c.Settings.BackoffMax, m.c.Rand)
		m.retryAt = m.c.Now().Add(wait)
		m.c.Logger().Warn("step failed; retrying in place", "state", m.cur.Name(), "attempt", m.failures, "retry_in", wait, "err", err)
	}
}

// escalate leaves a state whose retries are exhausted: to Recovering, or
// to Failing where the state says so (stop paths must not restart a job).
func (m *Machine) escalate(ctx context.Context, err error) {
	if e, ok := m.cur.(interface{ escalation(error) State }); ok {
		m.move(ctx, Transition{Next: e.escalation(err), Reason: err.Error()})
		return
	}
	m.recoverFrom(ctx, err)
}

func (m *Machine) recoverFrom(ctx context.Context, err error) {
	if _, err := findEdge(m.cur.Name(), job.Recovering); err != nil {
		m.escalateFatal(ctx, err)
		return
	}
	m.move(ctx, Transition{Next: &Recovering{Cause: err}, Reason: err.Error()})
}

func (m *Machine) escalateFatal(ctx context.Context, err error) {
	f := failureOf(err)
	if m.cur.Name() == job.Failing {
		m.c.Logger().Error("failing job hit an error", "err", err)
		return
	}
	m.move(ctx, Transition{Next: &Failing{Failure: f}, Reason: f.Message})
}

// move performs a transition and every immediate one that follows from
// entering the new state. Each is persisted before the next state runs.
func (m *Machine) move(ctx context.Context, tr Transition) {
	for tr.Next != nil && m.lost == nil {
		from, next := m.cur.Name(), tr.Next.Name()
		e, err := findEdge(from, next)
		if err != nil {
			// A bug in a state: never act on an undeclared edge.
			m.c.Logger().Error("illegal transition refused", "from", from, "to", next, "reason", tr.Reason)
			if next != job.Failing && from != job.Failing {
				tr = Transition{Next: &Failing{Failure: job.Failure{Message: "internal error: " + err.Error(), Domain: job.DomainInternal}}, Reason: err.Error()}
				continue
			}
			return
		}
		now := m.c.Now()
		prev := m.c.Status
		if e.effect != nil {
			e.effect(&m.c.Status, now)
		}
		m.c.Status.State = next
		m.c.Status.TransitionedAt = now
		if err := m.persist(ctx); err != nil {
			m.c.Status = prev
			if classify(err) == classLostOwnership {
				m.fail(ctx, err)
				return
			}
			m.pending = &tr
			m.retryPersist(err)
			return
		}
		in := now.Sub(m.c.EnteredAt)
		m.c.Logger().Info("state transition", "from", from, "to", next, "reason", tr.Reason,
			"in_state", in.String(), "restarts", m.c.Status.Restarts)
		m.c.Telemetry.Transition(m.c.Status.JobID, from, next, in)
		if next == job.Recovering {
			m.c.Telemetry.Restarted(m.c.Status.JobID, m.c.Status.Restarts)
		}
		m.cur, m.c.EnteredAt = tr.Next, now
		m.failures, m.lastErr, m.retryAt = 0, nil, time.Time{}
		m.entering = true
		var eerr error
		tr, eerr = m.enter(ctx)
		if eerr != nil {
			m.fail(ctx, eerr)
			return
		}
	}
	m.flush(ctx)
}

// persist writes the status under this controller's fence. A conflict at
// its own fence is its own earlier write, whose answer was lost after the
// transport gave up retrying (only this controller writes under its fence,
// and only this job's loop writes its status): the write is made again on
// top of it.
func (m *Machine) persist(ctx context.Context) error {
	takeHealth(m.c)
	st, err := m.c.Store.PutStatus(ctx, m.c.Fence, m.c.Status)
	var ce *store.ConflictError
	if errors.As(err, &ce) && ce.CurrentFence == m.c.Fence {
		cur, gerr := m.c.Store.GetStatus(ctx, m.c.Status.JobID)
		if gerr != nil {
			return fmt.Errorf("persist status of job %s: re-read after an unanswered write: %w", m.c.Status.JobID, gerr)
		}
		m.c.Logger().Info("status write had landed unanswered; writing again on top of it", "version", cur.Version)
		m.c.Status.Version = cur.Version
		st, err = m.c.Store.PutStatus(ctx, m.c.Fence, m.c.Status)
	}
	if err != nil {
		return fmt.Errorf("persist status of job %s: %w", m.c.Status.JobID, err)
	}
	m.c.Status = st
	m.c.dirty = false
	return nil
}

// takeHealth refreshes the status's health summary from the current run:
// every status write carries it, so it needs no write of its own. With no
// run up nothing is processed (the rates are zero), and the last heartbeat
// of the run that ended is kept while the job is still meant to run: while
// it recovers, its age is how long the job has been without it. A job at
// rest has no heartbeat to watch.
func takeHealth(c *Context) {
	if c.Controller != nil {
		c.Status.Health = c.Controller.Health()
		return
	}
	h := &c.Status.Health
	h.RecordsInPerSec, h.RecordsOutPerSec = 0, 0
	h.TakenAt = c.Now().UTC().Truncate(time.Millisecond)
	if c.Status.State.Terminal() {
		h.HeartbeatAt = time.Time{}
	}
}

func (m *Machine) lostOr(err error) error {
	if classify(err) == classLostOwnership {
		return fmt.Errorf("%w: %w", ErrLostOwnership, err)
	}
	return err
}

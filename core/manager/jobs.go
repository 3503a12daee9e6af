package manager

import (
	"context"
	"errors"
	"fmt"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/state"
	"github.com/weirstream/weir/core/store"
)

// jobSlot is one job this tenure runs: its mailbox, which outlives any one
// loop of the job, and the loop reading it.
type jobSlot struct {
	id      job.ID
	mb      *state.Mailbox
	running bool
	runner  *state.Runner
}

// slot returns the job's slot, creating it if the job is new to the tenure.
func (t *tenure) slot(id job.ID) *jobSlot {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.jobs[id]
	if !ok {
		s = &jobSlot{id: id, mb: state.NewMailbox(t.d.MailboxLimit)}
		t.jobs[id] = s
	}
	return s
}

// lookup finds the slot of a job this tenure runs.
func (t *tenure) lookup(id job.ID) (*jobSlot, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.jobs[id]
	return s, ok
}

func (t *tenure) pollLoop(ctx context.Context) error {
	ticker := t.d.Clock.NewTicker(t.d.PollInterval)
	defer ticker.Stop()
	first := true
	for {
		err := t.poll(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			t.log.Warn("polling the active jobs failed; will retry", "err", err)
		case err == nil && first:
			first = false
			close(t.polled)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
		}
	}
}

// poll reads the active index once, announces each job's config version
// to its mailbox and makes sure a loop runs every listed job. It is
// level-based (whatever was missed is seen next time) and never waits on a
// job: the jobs without a loop are taken over in bulk in goroutines of
// their own (takeOver), and each job's loop runs in its own.
func (t *tenure) poll(ctx context.Context) error {
	refs, err := t.d.Store.ActiveJobs(ctx)
	if err != nil {
		return fmt.Errorf("read the active jobs: %w", err)
	}
	var idle []*jobSlot
	for _, ref := range refs {
		s := t.slot(ref.ID)
		s.mb.Announce(ref.ConfigVersion)
		if t.claimLoop(s) {
			idle = append(idle, s)
		}
	}
	t.takeOver(ctx, idle)
	return nil
}

// claimLoop marks the job's loop running and says whether it was not.
func (t *tenure) claimLoop(s *jobSlot) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.running {
		return false
	}
	s.running = true
	return true
}

// startLoop starts the loop of a job claimLoop marked; claimed is what a
// bulk take-over read of it under its claim, or nil.
func (t *tenure) startLoop(ctx context.Context, s *jobSlot, claimed *store.JobState) {
	t.group.Go(func() error { return t.runJob(ctx, s, claimed) })
}

// runJob runs one job until it is parked, ctx ends or another controller
// owns it. Trouble taking the job over (a store error reading or claiming
// it) is retried here with back-off; it never concerns another job.
//
// claimed, if not nil, is the job as a bulk take-over read it under its
// claim: the first attempt starts from it; a retry reads the job anew.
func (t *tenure) runJob(ctx context.Context, s *jobSlot, claimed *store.JobState) error {
	defer func() {
		t.mu.Lock()
		s.running, s.runner = false, nil
		t.mu.Unlock()
	}()
	log := t.log.With("job", string(s.id))
	for failures := 0; ; {
		err := t.runOnce(ctx, s, claimed)
		claimed = nil
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, state.ErrParked), errors.Is(err, store.ErrNotFound):
			t.remove(s)
			return nil
		case errors.Is(err, state.ErrLostOwnership):
			log.Error("another controller owns a job: giving up leadership", "err", err)
			return err
		case err == nil:
			return nil
		case errors.Is(err, errNewVersion):
			continue
		}
		failures++
		wait := state.Backoff(failures, t.d.Settings.BackoffInitial, t.d.Settings.BackoffMax, t.d.Rand)
		log.Warn("job loop stopped; restarting it", "retry_in", wait.String(), "attempt", failures, "err", err)
		if !t.sleep(ctx, wait) {
			return nil
		}
	}
}

// runOnce reads the job (unless it was claimed and read in bulk) and
// drives it with a fresh Machine and Runner.
func (t *tenure) runOnce(ctx context.Context, s *jobSlot, claimed *store.JobState) error {
	var cfg job.Config
	if claimed != nil {
		cfg = claimed.Config
	} else {
		var err error
		if cfg, err = t.d.Store.GetConfig(ctx, s.id); err != nil {
			return fmt.Errorf("read config of job %s: %w", s.id, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		// The config API validates; a stored config that does not is left
		// alone until a newer version replaces it.
		t.log.Error("stored config is invalid; job not run until a new version is written",
			"job", string(s.id), "version", cfg.Version, "err", err)
		return t.awaitVersion(ctx, s, cfg.Version)
	}
	// The Machine claims the job and reads its status itself (Start),
	// unless that was done in bulk.
	m := state.NewMachine(state.Deps{
		Store:     t.d.Store,
		Fleet:     t.d.Fleet,
		Clock:     t.d.Clock,
		Telemetry: t.d.Telemetry,
		Log:       t.log,
		Settings:  t.d.Settings,
		Fence:     t.fence,
		Rand:      t.d.Rand,
	}, cfg, job.Status{})
	if claimed != nil {
		m.UseClaimed(*claimed)
	}
	if t.d.OnTakenOver != nil {
		m.OnStarted(func() { t.d.OnTakenOver(s.id) })
	}
	r := state.NewRunner(m, s.mb, t.park)
	if t.d.OnTick != nil {
		r.OnTick(t.d.OnTick)
	}
	t.mu.Lock()
	s.runner = r
	t.mu.Unlock()
	return r.Run(ctx)
}

func (t *tenure) park(ctx context.Context, id job.ID, configVersion int64) error {
	return t.d.Store.Park(ctx, t.fence, id, configVersion)
}

// awaitVersion waits until a config version above v is announced.
func (t *tenure) awaitVersion(ctx context.Context, s *jobSlot, v int64) error {
	for s.mb.Announced() <= v {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.mb.Wake():
		}
	}
	return errNewVersion
}

// errNewVersion: read the job again at once.
var errNewVersion = errors.New("a new config version was written")

// remove forgets a job that came to rest: its mailbox is closed, so what
// waits there and what arrives later is acknowledged as stale.
func (t *tenure) remove(s *jobSlot) {
	t.mu.Lock()
	if t.jobs[s.id] == s {
		delete(t.jobs, s.id)
	}
	t.mu.Unlock()
	if n := s.mb.Close(); n > 0 {
		t.log.Info("worker messages of a job at rest acknowledged as stale", "job", string(s.id), "count", n)
	}
	t.d.Telemetry.Forget(s.id)
}

// forgetAll drops the gauges of every job: after the tenure another
// controller reports them.
func (t *tenure) forgetAll() {
	t.mu.Lock()
	ids := make([]job.ID, 0, len(t.jobs))
	for id := range t.jobs {
		ids = append(ids, id)
	}
	t.mu.Unlock()
	for _, id := range ids {
		t.d.Telemetry.Forget(id)
	}
}

// Package jobs is what operators can do to jobs, shared by the config API
// and the TTL function: create, list, read, change and delete a job, keep
// its TTL timer in step with its config, and stop it when its TTL is due.
// It sees only ports: the store, and Timers for the TTL schedule.
package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// Timers keeps one TTL timer per job (an EventBridge schedule on AWS).
type Timers interface {
	// Set makes the job's timer fire once at `at`, creating or moving it.
	Set(ctx context.Context, id job.ID, at time.Time) error
	// Clear removes the job's timer; no timer is not an error.
	Clear(ctx context.Context, id job.ID) error
}

// Store is the part of the store the operations use.
type Store interface {
	store.Configs
	store.Statuses
	ListCheckpoints(ctx context.Context, id job.ID) ([]job.Checkpoint, error)
	store.Catalog
}

// Errors the operations return; the API maps them to status codes.
var (
	// ErrInvalid: the request asks for something no job can be (a
	// parallelism for an operator the spec lacks, an interval too short).
	ErrInvalid = errors.New("invalid job")
	// ErrExists: a job with that id exists already.
	ErrExists = errors.New("job exists")
	// ErrNotAtRest: the job is running or moving and cannot be deleted.
	ErrNotAtRest = errors.New("job is not at rest")
)

// Deps are what a Service is built from.
type Deps struct {
	Store  Store
	Timers Timers
	// Now defaults to time.Now.
	Now func() time.Time
	// Log defaults to slog.Default().
	Log *slog.Logger
}

// Service carries out operator requests. It is safe for concurrent use.
type Service struct {
	store  Store
	timers Timers
	now    func() time.Time
	log    *slog.Logger
}

// New checks deps and returns a Service.
func New(d Deps) (*Service, error) {
	if d.Store == nil {
		return nil, errors.New("jobs: Deps.Store is nil")
	}
	if d.Timers == nil {
		return nil, errors.New("jobs: Deps.Timers is nil")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return &Service{store: d.Store, timers: d.Timers, now: d.Now, log: d.Log}, nil
}

// View is everything an operator sees of a job. Status is nil until the
// controller has written one.
type View struct {
	Config      job.Config
	Status      *job.Status
	Checkpoints []job.Checkpoint
}

// RecentCheckpoints is how many of the newest checkpoints a View carries.
const RecentCheckpoints = 10

// Create stores a new job's config (Version must be 0) and sets its TTL
// timer.
func (s *Service) Create(ctx context.Context, cfg job.Config) (View, error) {
	cfg.Version = 0
	cfg.UpdatedAt = s.now().UTC()
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return View{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	stored, err := s.store.PutConfig(ctx, cfg)
	if errors.Is(err, store.ErrConflict) {
		return View{}, fmt.Errorf("%w: job %s exists already: change it with PATCH /jobs/%s, or pick another id", ErrExists, cfg.JobID, cfg.JobID)
	}
	if err != nil {
		return View{}, err
	}
	s.syncTimer(ctx, stored, nil)
	return View{Config: stored}, nil
}

// Get reads a job's config, status and recent checkpoints.
func (s *Service) Get(ctx context.Context, id job.ID) (View, error) {
	cfg, err := s.store.GetConfig(ctx, id)
	if err != nil {
		return View{}, err
	}
	v := View{Config: cfg}
	st, err := s.store.GetStatus(ctx, id)
	switch {
	case err == nil:
		v.Status = &st
	case !errors.Is(err, store.ErrNotFound):
		return View{}, err
	}
	cps, err := s.store.ListCheckpoints(ctx, id)
	if err != nil {
		return View{}, err
	}
	if len(cps) > RecentCheckpoints {
		cps = cps[len(cps)-RecentCheckpoints:]
	}
	v.Checkpoints = cps
	if v.Status != nil {
		newestReady(v.Status, cps)
	}
	return v, nil
}

// newestReady brings the status's last ready epoch up to the newest ready
// checkpoint read with it. The controller persists the epoch with its
// next status write (at most once a minute while a job runs, not after
// every checkpoint, which would double a job's write cost); the checkpoint
// records are written as each epoch becomes ready, and a single-job read
// has them at no extra cost.
func newestReady(st *job.Status, cps []job.Checkpoint) {
	for i := len(cps) - 1; i >= 0; i-- {
		cp := cps[i]
		if cp.State != job.CheckpointReady {
			continue
		}
		if cp.Epoch > st.LastReadyEpoch {
			st.LastReadyEpoch, st.LastReadyAt = cp.Epoch, cp.FinishedAt
		}
		return
	}
}

// List returns a page of jobs, each with its status but without
// checkpoints, and the token of the next page: one store read per page,
// however many jobs it holds.
func (s *Service) List(ctx context.Context, after job.ID, limit int) ([]View, job.ID, error) {
	listed, next, err := s.store.ListJobs(ctx, after, limit)
	if err != nil {
		return nil, "", err
	}
	out := make([]View, len(listed))
	for i, l := range listed {
		out[i] = View{Config: l.Config, Status: l.Status}
	}
	return out, next, nil
}

// Change is a set of changes to a job's config; nil fields stay as they are.
type Change struct {
	Stop               *job.StopMode
	Restart            *job.RestartMode
	Parallelism        map[string]int
	CheckpointInterval *time.Duration
	// TTL zero clears it.
	TTL           *time.Duration
	RestartPolicy *RestartPolicyChange
	// Reason is recorded with a stop.
	Reason string
}

// RestartPolicyChange changes one or both fields of the restart policy.
type RestartPolicyChange struct {
	AllowedRestarts *int
	HealthyDuration *time.Duration
}

// Patch applies ch to the job's config if it is still at version, and
// moves its TTL timer to match. A stale version is a *store.ConflictError.
func (s *Service) Patch(ctx context.Context, id job.ID, version int64, ch Change) (View, error) {
	cur, err := s.store.GetConfig(ctx, id)
	if err != nil {
		return View{}, err
	}
	if cur.Version != version {
		return View{}, &store.ConflictError{What: "config", JobID: id, Expected: version, Current: cur.Version}
	}
	next, err := apply(cur, ch)
	if err != nil {
		return View{}, err
	}
	next.UpdatedAt = s.now().UTC()
	if err := next.Validate(); err != nil {
		return View{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	stored, err := s.store.PutConfig(ctx, next)
	if err != nil {
		return View{}, err
	}
	s.syncTimer(ctx, stored, &cur)
	return s.Get(ctx, id)
}

func apply(cfg job.Config, ch Change) (job.Config, error) {
	if ch.Stop != nil {
		cfg.Stop = *ch.Stop
		cfg.StopReason = ""
		if cfg.Stop.Requested() {
			cfg.StopReason = ch.Reason
		}
	}
	if ch.Restart != nil {
		nonce, err := newNonce()
		if err != nil {
			return job.Config{}, err
		}
		cfg.RestartMode, cfg.RestartNonce = *ch.Restart, nonce
	}
	if ch.Parallelism != nil {
		p := make(map[string]int, len(cfg.Parallelism)+len(ch.Parallelism))
		for op, n := range cfg.Parallelism {
			p[op] = n
		}
		for op, n := range ch.Parallelism {
			p[op] = n
		}
		cfg.Parallelism = p
	}
	if ch.CheckpointInterval != nil {
		cfg.CheckpointInterval = *ch.CheckpointInterval
	}
	if ch.TTL != nil {
		cfg.TTL = *ch.TTL
	}
	if rp := ch.RestartPolicy; rp != nil {
		if rp.AllowedRestarts != nil {
			cfg.RestartPolicy.AllowedRestarts = *rp.AllowedRestarts
		}
		if rp.HealthyDuration != nil {
			cfg.RestartPolicy.HealthyDuration = *rp.HealthyDuration
		}
	}
	return cfg, nil
}

func newNonce() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make a restart nonce: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Delete removes a job at rest: one whose status is terminal, or that the
// controller has never picked up. version, when not 0, must be the config's.
func (s *Service) Delete(ctx context.Context, id job.ID, version int64) error {
	cfg, err := s.store.GetConfig(ctx, id)
	if err != nil {
		return err
	}
	if version != 0 && cfg.Version != version {
		return &store.ConflictError{What: "config", JobID: id, Expected: version, Current: cfg.Version}
	}
	var statusVersion int64
	st, err := s.store.GetStatus(ctx, id)
	switch {
	case err == nil:
		if !st.State.Terminal() {
			return fmt.Errorf("%w: job %s is %s: stop it first (PATCH {\"stop\": \"checkpoint\"}), wait until it is Stopped, then delete it", ErrNotAtRest, id, st.State)
		}
		statusVersion = st.Version
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	if err := s.store.DeleteJob(ctx, id, cfg.Version, statusVersion); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("%w: job %s changed while it was being deleted: read it again and retry", ErrNotAtRest, id)
		}
		return err
	}
	if err := s.timers.Clear(ctx, id); err != nil {
		s.log.WarnContext(ctx, "TTL timer of a deleted job not removed; it will fire once and find no job", "job", id, "err", err)
	}
	return nil
}

// syncTimer sets, moves or clears the job's TTL timer after a config
// write. A failure is logged, not returned: the config is written, and the
// controller's own TTL check stops the job if the timer is missing.
func (s *Service) syncTimer(ctx context.Context, cfg job.Config, prev *job.Config) {
	var err error
	switch {
	case cfg.TTL == 0 || cfg.Stop.Requested():
		if prev != nil && (prev.TTL == 0 || prev.Stop.Requested()) {
			return
		}
		err = s.timers.Clear(ctx, cfg.JobID)
	case prev != nil && prev.TTL == cfg.TTL && !prev.Stop.Requested():
		return
	default:
		var at time.Time
		at, err = s.deadline(ctx, cfg)
		if err == nil {
			err = s.timers.Set(ctx, cfg.JobID, at)
		}
	}
	if err != nil {
		s.log.WarnContext(ctx, "TTL timer not updated; the controller's own TTL check still applies", "job", cfg.JobID, "ttl", cfg.TTL, "err", err)
	}
}

// deadline is when the job's TTL runs out: TTL after it first started, or,
// for a job not started yet, TTL from now (the earliest it could be due;
// when the timer fires it is moved to the true deadline).
func (s *Service) deadline(ctx context.Context, cfg job.Config) (time.Time, error) {
	now := s.now()
	st, err := s.store.GetStatus(ctx, cfg.JobID)
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && st.StartedAt.IsZero()):
		return now.Add(cfg.TTL), nil
	case err != nil:
		return time.Time{}, err
	}
	at := st.StartedAt.Add(cfg.TTL)
	if at.Before(now) {
		at = now
	}
	return at, nil
}

package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// ExpiryEvent is the input of a job's TTL schedule.
type ExpiryEvent struct {
	JobID job.ID `json:"job_id"`
}

// Outcome says what one TTL firing did.
type Outcome string

const (
	// Stopped: the TTL had run out and an immediate stop was requested.
	Stopped Outcome = "stopped"
	// Moved: the job started later than its timer assumed (or has not
	// started); the timer now fires at the true deadline.
	Moved Outcome = "moved"
	// Ignored: nothing to do (no such job, no TTL, already stopping or at
	// rest). A second firing of the same timer ends here.
	Ignored Outcome = "ignored"
)

// maxStopAttempts bounds the re-reads when an operator changes the config
// at the moment the TTL stops the job.
const maxStopAttempts = 3

// Expire handles a TTL firing. It is idempotent. It returns an error only
// for failures worth a retry (the store or the scheduler did not answer).
func (s *Service) Expire(ctx context.Context, ev ExpiryEvent) (Outcome, error) {
	log := s.log.With("job", ev.JobID)
	if err := ev.JobID.Validate(); err != nil {
		log.WarnContext(ctx, "TTL firing ignored: its input names no valid job", "err", err)
		return Ignored, nil
	}
	for range maxStopAttempts {
		out, err := s.expireOnce(ctx, ev.JobID)
		var conflict *store.ConflictError
		if errors.As(err, &conflict) {
			continue
		}
		if err != nil {
			return "", err
		}
		return out, nil
	}
	return "", fmt.Errorf("TTL of job %s: its config kept changing; the firing will be retried", ev.JobID)
}

func (s *Service) expireOnce(ctx context.Context, id job.ID) (Outcome, error) {
	log := s.log.With("job", id)
	cfg, err := s.store.GetConfig(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		log.InfoContext(ctx, "TTL firing ignored: the job no longer exists")
		return Ignored, nil
	}
	if err != nil {
		return "", err
	}
	if cfg.TTL == 0 || cfg.Stop.Requested() {
		log.InfoContext(ctx, "TTL firing ignored: the job has no TTL or is already asked to stop", "ttl", cfg.TTL, "stop", cfg.Stop)
		return Ignored, nil
	}
	st, err := s.store.GetStatus(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return s.move(ctx, id, s.now().Add(cfg.TTL), "the job has not started")
	case err != nil:
		return "", err
	case st.State.Terminal():
		log.InfoContext(ctx, "TTL firing ignored: the job is at rest", "state", st.State)
		return Ignored, nil
	case st.StartedAt.IsZero():
		return s.move(ctx, id, s.now().Add(cfg.TTL), "the job has not started")
	}
	deadline := st.StartedAt.Add(cfg.TTL)
	if now := s.now(); deadline.After(now) {
		return s.move(ctx, id, deadline, "the job started later than the timer assumed")
	}
	cfg.Stop = job.StopImmediate
	cfg.StopReason = fmt.Sprintf("ttl: the job's TTL of %s ran out at %s (it started at %s)",
		cfg.TTL, deadline.UTC().Format(time.RFC3339), st.StartedAt.UTC().Format(time.RFC3339))
	cfg.UpdatedAt = s.now().UTC()
	stored, err := s.store.PutConfig(ctx, cfg)
	if err != nil {
		return "", err
	}
	log.InfoContext(ctx, "TTL ran out: immediate stop requested", "config_version", stored.Version, "reason", cfg.StopReason)
	return Stopped, nil
}

func (s *Service) move(ctx context.Context, id job.ID, at time.Time, why string) (Outcome, error) {
	if err := s.timers.Set(ctx, id, at); err != nil {
		return "", fmt.Errorf("move TTL timer of job %s: %w", id, err)
	}
	s.log.InfoContext(ctx, "TTL timer moved: "+why, "job", id, "at", at.UTC())
	return Moved, nil
}

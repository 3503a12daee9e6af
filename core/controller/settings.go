package controller

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/core/protocol"
)

// Settings are the controller's tunables. Every one has a default taken from
// the source system (or Flink where the source system has none), except the
// heartbeat time-out, which follows weir's cheaper heartbeat interval; each
// can be changed through the controller's flags or environment.
type Settings struct {
	// ProgressInterval is the cadence of Progress in Running (and of the
	// tick every other state is driven by).
	ProgressInterval time.Duration
	// LogInterval is how often a running job logs a job_running event.
	LogInterval time.Duration
	// HeartbeatTimeout: a worker silent for this long is taken as dead.
	// The default is five of the workers' default heartbeat intervals
	// (protocol.DefaultHeartbeatTimeout), so a few lost envelopes never
	// kill a healthy worker; a shorter time-out needs workers that send
	// more often, which costs more (docs/protocol.md). Keep it below the
	// restart policy's healthy duration, or a job whose workers keep dying
	// counts as healthy and its restarts never run out.
	HeartbeatTimeout time.Duration
	// CheckpointTimeout fails a checkpoint that has not completed in time.
	CheckpointTimeout time.Duration
	// MinCheckpointPause is the least time between the end of one checkpoint
	// and the start of the next.
	MinCheckpointPause time.Duration
	// TolerableCheckpointFailures is how many checkpoints in a row may fail
	// before the job recovers.
	TolerableCheckpointFailures int
	// RetainedCheckpoints is how many ready checkpoints cleanup keeps.
	RetainedCheckpoints int
	// MetricsInterval is how often worker metrics are aggregated and
	// exported; MetricsWindow is the span rates are computed over.
	MetricsInterval time.Duration
	MetricsWindow   time.Duration
	// StopWait is how long workers are given to stop before being torn down.
	StopWait time.Duration
	// WorkerStartupTimeout bounds the wait for a run's workers to register;
	// TaskStartupTimeout the wait for every task to start after that.
	WorkerStartupTimeout time.Duration
	TaskStartupTimeout   time.Duration
	// FinishingTimeout bounds the wait for all tasks to finish after the
	// sources are done.
	FinishingTimeout time.Duration
	// FinalCheckpointTimeout bounds a stop's, rescale's or safe restart's
	// wait for its final checkpoint (including one already in flight).
	FinalCheckpointTimeout time.Duration
	// BackoffInitial doubles up to BackoffMax between retries in place and
	// between restarts (with jitter).
	BackoffInitial time.Duration
	BackoffMax     time.Duration
	// RetryLimit is how many attempts an operation gets in place before the
	// job recovers; StopRetryLimit is used for stopping and tearing down.
	RetryLimit     int
	StopRetryLimit int
}

// DefaultSettings returns the defaults.
func DefaultSettings() Settings {
	return Settings{
		ProgressInterval:            200 * time.Millisecond,
		LogInterval:                 60 * time.Second,
		HeartbeatTimeout:            protocol.DefaultHeartbeatTimeout,
		CheckpointTimeout:           10 * time.Minute,
		MinCheckpointPause:          0,
		TolerableCheckpointFailures: 0,
		RetainedCheckpoints:         10,
		MetricsInterval:             2 * time.Second,
		MetricsWindow:               5 * time.Minute,
		StopWait:                    60 * time.Second,
		WorkerStartupTimeout:        10 * time.Minute,
		TaskStartupTimeout:          2 * time.Minute,
		FinishingTimeout:            5 * time.Minute,
		FinalCheckpointTimeout:      10 * time.Minute,
		BackoffInitial:              500 * time.Millisecond,
		BackoffMax:                  time.Minute,
		RetryLimit:                  10,
		StopRetryLimit:              20,
	}
}

// Validate says which setting is unusable and why.
func (s Settings) Validate() error {
	positive := []struct {
		name string
		d    time.Duration
	}{
		{"progress interval", s.ProgressInterval},
		{"log interval", s.LogInterval},
		{"heartbeat timeout", s.HeartbeatTimeout},
		{"checkpoint timeout", s.CheckpointTimeout},
		{"metrics interval", s.MetricsInterval},
		{"metrics window", s.MetricsWindow},
		{"stop wait", s.StopWait},
		{"worker startup timeout", s.WorkerStartupTimeout},
		{"task startup timeout", s.TaskStartupTimeout},
		{"finishing timeout", s.FinishingTimeout},
		{"final checkpoint timeout", s.FinalCheckpointTimeout},
		{"initial back-off", s.BackoffInitial},
		{"maximum back-off", s.BackoffMax},
	}
	for _, p := range positive {
		if p.d <= 0 {
			return fmt.Errorf("%s is %s: it must be positive", p.name, p.d)
		}
	}
	if s.MinCheckpointPause < 0 {
		return fmt.Errorf("minimum checkpoint pause is %s: it must not be negative", s.MinCheckpointPause)
	}
	if s.BackoffMax < s.BackoffInitial {
		return fmt.Errorf("maximum back-off %s is below the initial back-off %s", s.BackoffMax, s.BackoffInitial)
	}
	if s.HeartbeatTimeout <= s.ProgressInterval {
		return fmt.Errorf("heartbeat timeout %s must exceed the progress interval %s", s.HeartbeatTimeout, s.ProgressInterval)
	}
	if s.TolerableCheckpointFailures < 0 {
		return fmt.Errorf("tolerable checkpoint failures is %d: it must not be negative", s.TolerableCheckpointFailures)
	}
	if s.RetainedCheckpoints < 1 {
		return fmt.Errorf("retained checkpoints is %d: keep at least 1", s.RetainedCheckpoints)
	}
	if s.RetryLimit < 1 || s.StopRetryLimit < 1 {
		return fmt.Errorf("retry limits must be at least 1 (got %d and %d)", s.RetryLimit, s.StopRetryLimit)
	}
	return nil
}

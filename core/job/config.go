package job

import (
	"fmt"
	"time"
)

// StopMode says how an operator wants a job stopped.
type StopMode string

const (
	StopNone       StopMode = "none"
	StopCheckpoint StopMode = "checkpoint" // take a final checkpoint, then stop
	StopGraceful   StopMode = "graceful"   // ask workers to drain and stop
	StopImmediate  StopMode = "immediate"  // ask workers to stop now
	StopForce      StopMode = "force"      // tear workers down without asking
)

// Valid reports whether m is a known stop mode; the empty mode means none.
func (m StopMode) Valid() bool {
	switch m {
	case "", StopNone, StopCheckpoint, StopGraceful, StopImmediate, StopForce:
		return true
	}
	return false
}

// Requested reports whether m asks for the job to stop.
func (m StopMode) Requested() bool { return m != "" && m != StopNone }

// RestartMode says how a restart requested through the nonce is carried out.
type RestartMode string

const (
	RestartSafe  RestartMode = "safe"  // final checkpoint, then reschedule
	RestartForce RestartMode = "force" // tear down, then reschedule
)

// Valid reports whether m is a known restart mode; empty means safe.
func (m RestartMode) Valid() bool {
	return m == "" || m == RestartSafe || m == RestartForce
}

// RestartPolicy bounds how often a failing job is restarted.
type RestartPolicy struct {
	// AllowedRestarts is how many entries to Recovering a job may make before
	// it fails; -1 means unlimited.
	AllowedRestarts int `json:"allowed_restarts"`
	// HealthyDuration is how long a job must run without trouble before its
	// restart count is reset to zero.
	HealthyDuration time.Duration `json:"healthy_duration"`
}

// DefaultRestartPolicy is the source system's default.
func DefaultRestartPolicy() RestartPolicy {
	return RestartPolicy{AllowedRestarts: 20, HealthyDuration: 2 * time.Minute}
}

// Config is what operators want of a job. Every change bumps Version, and
// writers must name the version they read (optimistic concurrency).
type Config struct {
	JobID   ID    `json:"job_id"`
	Version int64 `json:"version"`
	Spec    Spec  `json:"spec"`

	Stop StopMode `json:"stop"`
	// StopReason says who or what asked for the stop (an operator, the
	// TTL), shown to operators.
	StopReason   string      `json:"stop_reason,omitempty"`
	RestartNonce string      `json:"restart_nonce,omitempty"`
	RestartMode  RestartMode `json:"restart_mode,omitempty"`
	// Parallelism overrides an operator's parallelism from the spec.
	Parallelism        map[string]int `json:"parallelism,omitempty"`
	CheckpointInterval time.Duration  `json:"checkpoint_interval"`
	// TTL, when set, stops the job (immediately) that long after it first
	// started running.
	TTL           time.Duration `json:"ttl,omitempty"`
	RestartPolicy RestartPolicy `json:"restart_policy"`

	UpdatedAt time.Time `json:"updated_at"`
}

// DefaultCheckpointInterval is used when a config does not set one.
const DefaultCheckpointInterval = 10 * time.Second

// MinCheckpointInterval keeps checkpoint traffic (and its cost) sane.
const MinCheckpointInterval = time.Second

// WithDefaults fills unset fields with weir's defaults.
func (c Config) WithDefaults() Config {
	if c.Stop == "" {
		c.Stop = StopNone
	}
	if c.RestartMode == "" {
		c.RestartMode = RestartSafe
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.RestartPolicy == (RestartPolicy{}) {
		c.RestartPolicy = DefaultRestartPolicy()
	}
	return c
}

// Validate checks a config (after WithDefaults) and says what to fix.
func (c Config) Validate() error {
	if err := c.JobID.Validate(); err != nil {
		return err
	}
	if err := c.Spec.Validate(); err != nil {
		return err
	}
	if !c.Stop.Valid() {
		return fmt.Errorf("stop %q is unknown: use none, checkpoint, graceful, immediate or force", c.Stop)
	}
	if !c.RestartMode.Valid() {
		return fmt.Errorf("restart_mode %q is unknown: use safe or force", c.RestartMode)
	}
	for op, p := range c.Parallelism {
		if _, ok := c.Spec.Operator(op); !ok {
			return fmt.Errorf("parallelism names operator %q, which the spec does not have", op)
		}
		if err := validParallelism(p); err != nil {
			return fmt.Errorf("parallelism of %s: %w", op, err)
		}
	}
	if c.CheckpointInterval < MinCheckpointInterval {
		return fmt.Errorf("checkpoint_interval %s is too short: use at least %s", c.CheckpointInterval, MinCheckpointInterval)
	}
	if c.TTL < 0 {
		return fmt.Errorf("ttl %s is negative: use 0 for no TTL or a positive duration", c.TTL)
	}
	if c.RestartPolicy.AllowedRestarts < -1 {
		return fmt.Errorf("restart_policy.allowed_restarts %d is invalid: use -1 for unlimited or a count of 0 or more", c.RestartPolicy.AllowedRestarts)
	}
	if c.RestartPolicy.HealthyDuration < 0 {
		return fmt.Errorf("restart_policy.healthy_duration %s is negative", c.RestartPolicy.HealthyDuration)
	}
	return nil
}

// EffectiveParallelism is an operator's parallelism after overrides.
func (c Config) EffectiveParallelism(op Operator) int {
	if p, ok := c.Parallelism[op.ID]; ok {
		return p
	}
	return op.Parallelism
}

// SameParallelism reports whether two configs lead to the same task layout.
func SameParallelism(a, b Config) bool {
	for _, op := range a.Spec.Operators {
		if a.EffectiveParallelism(op) != b.EffectiveParallelism(op) {
			return false
		}
	}
	return true
}

package job

import "time"

// State names a state of the job state machine. The behaviour of each state
// lives in core/state; this is the value that is stored and shown.
type State string

const (
	Created            State = "Created"
	Scheduling         State = "Scheduling"
	Running            State = "Running"
	CheckpointStopping State = "CheckpointStopping"
	Stopping           State = "Stopping"
	Finishing          State = "Finishing"
	Rescaling          State = "Rescaling"
	Restarting         State = "Restarting"
	Recovering         State = "Recovering"
	Failing            State = "Failing"
	Failed             State = "Failed"
	Stopped            State = "Stopped"
	Finished           State = "Finished"
)

// States lists every state, in the order they are usually met.
var States = []State{
	Created, Scheduling, Running, CheckpointStopping, Stopping, Finishing,
	Rescaling, Restarting, Recovering, Failing, Failed, Stopped, Finished,
}

// Known reports whether s is one of States.
func (s State) Known() bool {
	for _, k := range States {
		if k == s {
			return true
		}
	}
	return false
}

// Terminal reports whether the job has come to rest in s: only a config
// change (a new restart nonce, a cleared stop) moves it again.
func (s State) Terminal() bool {
	return s == Failed || s == Stopped || s == Finished
}

// ErrorDomain says whose fault a failure was.
type ErrorDomain string

const (
	DomainUser     ErrorDomain = "user"
	DomainInternal ErrorDomain = "internal"
	DomainExternal ErrorDomain = "external"
)

// Failure explains why a job failed or last recovered.
type Failure struct {
	Message string      `json:"message"`
	Domain  ErrorDomain `json:"domain"`
	// At is when the controller recorded it (zero for failures recorded
	// before the field existed).
	At time.Time `json:"at,omitzero"`
}

// Status is what the controller knows of a job. Only the controller holding
// the lease writes it, fenced; Version guards against lost updates.
type Status struct {
	JobID   ID    `json:"job_id"`
	Version int64 `json:"version"`
	State   State `json:"state"`
	// RunID is the generation of workers: bumped every time the job is
	// scheduled, so messages from earlier runs can be told apart.
	RunID    int64 `json:"run_id"`
	Restarts int   `json:"restarts"`
	// StartedAt is when the job first started running (the TTL counts from
	// here); RunStartedAt is when the current run entered Running.
	StartedAt      time.Time `json:"started_at,omitzero"`
	RunStartedAt   time.Time `json:"run_started_at,omitzero"`
	TransitionedAt time.Time `json:"transitioned_at,omitzero"`
	Failure        *Failure  `json:"failure,omitempty"`

	// ConfigVersion is the last config version the controller acted on.
	ConfigVersion int64 `json:"config_version"`
	// RestartNonce is the nonce of the config that last scheduled the job, so
	// a changed nonce is noticed even across controller restarts.
	RestartNonce string `json:"restart_nonce,omitempty"`
	// Parallelism is the layout the current run was scheduled with.
	Parallelism map[string]int `json:"parallelism,omitempty"`

	LastReadyEpoch int64 `json:"last_ready_epoch"`
	// LastReadyAt is when the controller saw LastReadyEpoch become ready
	// (zero when it did not see it: an epoch restored from an earlier run
	// keeps the time that run recorded).
	LastReadyAt time.Time `json:"last_ready_at,omitzero"`
	MinEpoch    int64     `json:"min_epoch"`

	// Health is the controller's summary of the current run, taken with
	// every status write.
	Health Health `json:"health,omitzero"`
}

// Health is what an operator watching a job needs between status writes.
// It is taken whenever the status is written, so it is as old as the
// status item: readers compute ages (now - HeartbeatAt) at read time, which
// stay true upper bounds between writes.
type Health struct {
	// HeartbeatAt is the last heartbeat of the run's least recently heard
	// worker: every worker heard from in the run has reported since. It is
	// the figure the heartbeat time-out is judged by, so while a job
	// recovers it shows how close the slowest worker is to being given up
	// on (the newest heartbeat would hide one silent worker behind the
	// others). Zero until a worker of the run is heard from.
	HeartbeatAt time.Time `json:"heartbeat_at,omitzero"`
	// RecordsInPerSec and RecordsOutPerSec are the run's rates over the
	// controller's metrics window.
	RecordsInPerSec  float64 `json:"records_in_per_sec,omitempty"`
	RecordsOutPerSec float64 `json:"records_out_per_sec,omitempty"`
	// TakenAt is when the summary was taken.
	TakenAt time.Time `json:"taken_at,omitzero"`
}

package client

import (
	"encoding/json"
	"time"
)

// The wire types of the config API (api/openapi.yaml). Durations stay the
// strings the API writes ("10s"), so what weirctl prints is what the API
// said.

// Operator is one node of a job's pipeline.
type Operator struct {
	ID          string `json:"id"`
	Parallelism int    `json:"parallelism"`
	Source      bool   `json:"source,omitempty"`
	Committing  bool   `json:"committing,omitempty"`
}

// Spec is the pipeline a job runs.
type Spec struct {
	Operators      []Operator `json:"operators"`
	SlotsPerWorker int        `json:"slots_per_worker"`
	Program        string     `json:"program"`
}

// RestartPolicy bounds how often a failing job is restarted.
type RestartPolicy struct {
	AllowedRestarts int    `json:"allowed_restarts"`
	HealthyDuration string `json:"healthy_duration,omitempty"`
}

// Config is what operators want of a job.
type Config struct {
	Spec               Spec           `json:"spec"`
	Stop               string         `json:"stop"`
	StopReason         string         `json:"stop_reason,omitempty"`
	RestartMode        string         `json:"restart_mode,omitempty"`
	RestartNonce       string         `json:"restart_nonce,omitempty"`
	Parallelism        map[string]int `json:"parallelism,omitempty"`
	CheckpointInterval string         `json:"checkpoint_interval"`
	TTL                string         `json:"ttl,omitempty"`
	RestartPolicy      RestartPolicy  `json:"restart_policy"`
	UpdatedAt          time.Time      `json:"updated_at"`
}

// Failure is why a job failed or last recovered, and when.
type Failure struct {
	Message string    `json:"message"`
	Domain  string    `json:"domain,omitempty"`
	At      time.Time `json:"at,omitzero"`
}

// Health is the controller's summary of a job's current run, as of
// TakenAt. Ages are computed at read time: now - HeartbeatAt.
type Health struct {
	// HeartbeatAt is the last heartbeat of the run's least recently heard
	// worker; zero until a worker of the run is heard.
	HeartbeatAt      time.Time `json:"heartbeat_at,omitzero"`
	RecordsInPerSec  float64   `json:"records_in_per_sec"`
	RecordsOutPerSec float64   `json:"records_out_per_sec"`
	TakenAt          time.Time `json:"taken_at"`
}

// Status is what the controller last wrote about a job.
type Status struct {
	State          string    `json:"state"`
	RunID          int64     `json:"run_id"`
	Restarts       int       `json:"restarts"`
	StartedAt      time.Time `json:"started_at,omitzero"`
	TransitionedAt time.Time `json:"transitioned_at,omitzero"`
	ConfigVersion  int64     `json:"config_version"`
	LastError      *Failure  `json:"last_error,omitempty"`
	LastReadyEpoch int64     `json:"last_ready_epoch"`
	LastReadyAt    time.Time `json:"last_ready_at,omitzero"`
	// Health is nil from an API that predates it.
	Health *Health `json:"health,omitempty"`
}

// Checkpoint is one epoch of a job.
type Checkpoint struct {
	Epoch      int64     `json:"epoch"`
	State      string    `json:"state"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Failure    string    `json:"failure,omitempty"`
}

// Job is a job as the API shows it. Status is nil until the controller
// has picked the job up.
type Job struct {
	ID          string       `json:"id"`
	Version     int64        `json:"version"`
	Config      Config       `json:"config"`
	Status      *Status      `json:"status"`
	Checkpoints []Checkpoint `json:"checkpoints"`
}

// JobList is one page of jobs.
type JobList struct {
	Jobs          []Job  `json:"jobs"`
	NextPageToken string `json:"next_page_token,omitempty"`
}

// CreateJob is the body of POST /jobs; a job file holds the same fields.
type CreateJob struct {
	ID                 string         `json:"id"`
	Spec               Spec           `json:"spec"`
	Stop               string         `json:"stop,omitempty"`
	Parallelism        map[string]int `json:"parallelism,omitempty"`
	CheckpointInterval string         `json:"checkpoint_interval,omitempty"`
	TTL                string         `json:"ttl,omitempty"`
	RestartPolicy      *PolicyChange  `json:"restart_policy,omitempty"`
}

// PolicyChange changes one or both fields of a restart policy.
type PolicyChange struct {
	AllowedRestarts *int    `json:"allowed_restarts,omitempty"`
	HealthyDuration *string `json:"healthy_duration,omitempty"`
}

// Patch is the body of PATCH /jobs/{id}; nil fields are left as they are.
type Patch struct {
	Stop               *string        `json:"stop,omitempty"`
	Restart            *string        `json:"restart,omitempty"`
	Parallelism        map[string]int `json:"parallelism,omitempty"`
	CheckpointInterval *string        `json:"checkpoint_interval,omitempty"`
	TTL                *string        `json:"ttl,omitempty"`
	RestartPolicy      *PolicyChange  `json:"restart_policy,omitempty"`
	// ClearTTL removes the TTL (sent as "ttl": null); it wins over TTL.
	ClearTTL bool `json:"-"`
}

// MarshalJSON writes the patch, with "ttl": null when ClearTTL is set.
func (p Patch) MarshalJSON() ([]byte, error) {
	type plain Patch
	b, err := json.Marshal(plain(p))
	if err != nil || !p.ClearTTL {
		return b, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, err
	}
	fields["ttl"] = json.RawMessage("null")
	return json.Marshal(fields)
}

// Problem is an RFC 9457 problem document, the API's error answer.
type Problem struct {
	Type     string       `json:"type"`
	Title    string       `json:"title"`
	Status   int          `json:"status"`
	Detail   string       `json:"detail"`
	Instance string       `json:"instance,omitempty"`
	Errors   []FieldError `json:"errors,omitempty"`
}

// FieldError points at the part of a request that was wrong.
type FieldError struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

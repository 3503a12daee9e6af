package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/functions/jobs"
)

// The wire types: what operators send and read. Durations are strings
// ("10s"); everything else is the domain's own JSON names.

type restartPolicyIn struct {
	AllowedRestarts *int    `json:"allowed_restarts"`
	HealthyDuration *string `json:"healthy_duration"`
}

type createIn struct {
	ID                 job.ID           `json:"id"`
	Spec               job.Spec         `json:"spec"`
	Stop               *job.StopMode    `json:"stop"`
	Parallelism        map[string]int   `json:"parallelism"`
	CheckpointInterval *string          `json:"checkpoint_interval"`
	TTL                *string          `json:"ttl"`
	RestartPolicy      *restartPolicyIn `json:"restart_policy"`
}

type patchIn struct {
	Stop               *job.StopMode    `json:"stop"`
	Restart            *job.RestartMode `json:"restart"`
	Parallelism        map[string]int   `json:"parallelism"`
	CheckpointInterval *string          `json:"checkpoint_interval"`
	// TTL is raw so that null (clear) differs from absent (keep).
	TTL           json.RawMessage  `json:"ttl"`
	RestartPolicy *restartPolicyIn `json:"restart_policy"`
}

type restartPolicyOut struct {
	AllowedRestarts int    `json:"allowed_restarts"`
	HealthyDuration string `json:"healthy_duration"`
}

type configOut struct {
	Spec               job.Spec         `json:"spec"`
	Stop               job.StopMode     `json:"stop"`
	StopReason         string           `json:"stop_reason,omitempty"`
	RestartMode        job.RestartMode  `json:"restart_mode,omitempty"`
	RestartNonce       string           `json:"restart_nonce,omitempty"`
	Parallelism        map[string]int   `json:"parallelism,omitempty"`
	CheckpointInterval string           `json:"checkpoint_interval"`
	TTL                string           `json:"ttl,omitempty"`
	RestartPolicy      restartPolicyOut `json:"restart_policy"`
	UpdatedAt          time.Time        `json:"updated_at"`
}

type statusOut struct {
	State          job.State    `json:"state"`
	RunID          int64        `json:"run_id"`
	Restarts       int          `json:"restarts"`
	StartedAt      time.Time    `json:"started_at,omitzero"`
	TransitionedAt time.Time    `json:"transitioned_at,omitzero"`
	ConfigVersion  int64        `json:"config_version"`
	LastError      *job.Failure `json:"last_error,omitempty"`
	LastReadyEpoch int64        `json:"last_ready_epoch"`
	LastReadyAt    time.Time    `json:"last_ready_at,omitzero"`
	Health         *healthOut   `json:"health,omitempty"`
}

// healthOut is the controller's health summary as of TakenAt; ages (now -
// heartbeat_at) are for the reader to compute at read time.
type healthOut struct {
	HeartbeatAt      time.Time `json:"heartbeat_at,omitzero"`
	RecordsInPerSec  float64   `json:"records_in_per_sec"`
	RecordsOutPerSec float64   `json:"records_out_per_sec"`
	TakenAt          time.Time `json:"taken_at"`
}

type checkpointOut struct {
	Epoch      int64               `json:"epoch"`
	State      job.CheckpointState `json:"state"`
	StartedAt  time.Time           `json:"started_at,omitzero"`
	FinishedAt time.Time           `json:"finished_at,omitzero"`
	Failure    string              `json:"failure,omitempty"`
}

type jobOut struct {
	ID          job.ID          `json:"id"`
	Version     int64           `json:"version"`
	Config      configOut       `json:"config"`
	Status      *statusOut      `json:"status"`
	Checkpoints []checkpointOut `json:"checkpoints"`
}

type listOut struct {
	Jobs          []jobOut `json:"jobs"`
	NextPageToken string   `json:"next_page_token,omitempty"`
}

func configView(c job.Config) configOut {
	out := configOut{
		Spec: c.Spec, Stop: c.Stop, StopReason: c.StopReason, RestartMode: c.RestartMode,
		RestartNonce: c.RestartNonce, Parallelism: c.Parallelism,
		CheckpointInterval: c.CheckpointInterval.String(),
		RestartPolicy: restartPolicyOut{
			AllowedRestarts: c.RestartPolicy.AllowedRestarts,
			HealthyDuration: c.RestartPolicy.HealthyDuration.String(),
		},
		UpdatedAt: c.UpdatedAt,
	}
	if c.TTL > 0 {
		out.TTL = c.TTL.String()
	}
	return out
}

func jobView(v jobs.View) jobOut {
	out := jobOut{ID: v.Config.JobID, Version: v.Config.Version, Config: configView(v.Config), Checkpoints: []checkpointOut{}}
	if st := v.Status; st != nil {
		out.Status = &statusOut{
			State: st.State, RunID: st.RunID, Restarts: st.Restarts, StartedAt: st.StartedAt,
			TransitionedAt: st.TransitionedAt, ConfigVersion: st.ConfigVersion, LastError: st.Failure,
			LastReadyEpoch: st.LastReadyEpoch, LastReadyAt: st.LastReadyAt,
		}
		if h := st.Health; !h.TakenAt.IsZero() {
			out.Status.Health = &healthOut{
				HeartbeatAt: h.HeartbeatAt, RecordsInPerSec: h.RecordsInPerSec,
				RecordsOutPerSec: h.RecordsOutPerSec, TakenAt: h.TakenAt,
			}
		}
	}
	for _, cp := range v.Checkpoints {
		out.Checkpoints = append(out.Checkpoints, checkpointOut{
			Epoch: cp.Epoch, State: cp.State, StartedAt: cp.StartedAt, FinishedAt: cp.FinishedAt, Failure: cp.Failure,
		})
	}
	return out
}

// fieldProblem is a 400 that points at one field.
func fieldProblem(pointer, detail string) *Problem {
	p := newProblem(400, typeInvalidRequest, "The request is not valid", pointer+": "+detail)
	p.Errors = []FieldError{{Pointer: pointer, Detail: detail}}
	return p
}

// rangeProblem is a 422: the field is well-formed (the schema accepts it)
// but its value is outside what a job may have.
func rangeProblem(pointer, detail string) *Problem {
	p := newProblem(422, typeInvalidJob, "The job is not valid", pointer+": "+detail)
	p.Errors = []FieldError{{Pointer: pointer, Detail: detail}}
	return p
}

// duration parses a duration field; the schema has checked its shape.
func duration(pointer, s string, min, max time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		// The schema has checked the form, so what is left is a value too
		// large for any duration.
		return 0, rangeProblem(pointer, fmt.Sprintf("%q is out of range: use %s to %s", s, min, max))
	}
	if d < min || d > max {
		return 0, rangeProblem(pointer, fmt.Sprintf("%s is out of range: use %s to %s", d, min, max))
	}
	return d, nil
}

// Ranges of the duration fields.
const (
	maxCheckpointInterval = 24 * time.Hour
	maxTTL                = 366 * 24 * time.Hour
	maxHealthyDuration    = 7 * 24 * time.Hour
)

func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return newProblem(400, typeInvalidRequest, "The request body is not valid", err.Error())
	}
	if dec.More() {
		return newProblem(400, typeInvalidRequest, "The request body is not valid", "the body holds more than one JSON value: send one object")
	}
	return nil
}

func (in *restartPolicyIn) change() (*jobs.RestartPolicyChange, error) {
	if in == nil {
		return nil, nil
	}
	ch := &jobs.RestartPolicyChange{AllowedRestarts: in.AllowedRestarts}
	if in.HealthyDuration != nil {
		d, err := duration("/restart_policy/healthy_duration", *in.HealthyDuration, 0, maxHealthyDuration)
		if err != nil {
			return nil, err
		}
		ch.HealthyDuration = &d
	}
	return ch, nil
}

func (in createIn) config() (job.Config, error) {
	cfg := job.Config{JobID: in.ID, Spec: in.Spec, Parallelism: in.Parallelism}
	if in.Stop != nil {
		cfg.Stop = *in.Stop
	}
	if in.CheckpointInterval != nil {
		d, err := duration("/checkpoint_interval", *in.CheckpointInterval, job.MinCheckpointInterval, maxCheckpointInterval)
		if err != nil {
			return job.Config{}, err
		}
		cfg.CheckpointInterval = d
	}
	if in.TTL != nil {
		d, err := duration("/ttl", *in.TTL, 0, maxTTL)
		if err != nil {
			return job.Config{}, err
		}
		cfg.TTL = d
	}
	rp, err := in.RestartPolicy.change()
	if err != nil {
		return job.Config{}, err
	}
	cfg.RestartPolicy = job.DefaultRestartPolicy()
	if rp != nil {
		if rp.AllowedRestarts != nil {
			cfg.RestartPolicy.AllowedRestarts = *rp.AllowedRestarts
		}
		if rp.HealthyDuration != nil {
			cfg.RestartPolicy.HealthyDuration = *rp.HealthyDuration
		}
	}
	return cfg, nil
}

func (in patchIn) change() (jobs.Change, error) {
	ch := jobs.Change{Stop: in.Stop, Restart: in.Restart, Parallelism: in.Parallelism}
	if in.Stop != nil && in.Stop.Requested() {
		ch.Reason = "operator: PATCH stop=" + string(*in.Stop)
	}
	if in.CheckpointInterval != nil {
		d, err := duration("/checkpoint_interval", *in.CheckpointInterval, job.MinCheckpointInterval, maxCheckpointInterval)
		if err != nil {
			return jobs.Change{}, err
		}
		ch.CheckpointInterval = &d
	}
	if len(in.TTL) > 0 {
		var ttl time.Duration
		if string(in.TTL) != "null" {
			var s string
			if err := json.Unmarshal(in.TTL, &s); err != nil {
				return jobs.Change{}, fieldProblem("/ttl", `must be a duration string such as "1h", or null to clear it`)
			}
			d, err := duration("/ttl", s, 0, maxTTL)
			if err != nil {
				return jobs.Change{}, err
			}
			ttl = d
		}
		ch.TTL = &ttl
	}
	rp, err := in.RestartPolicy.change()
	if err != nil {
		return jobs.Change{}, err
	}
	ch.RestartPolicy = rp
	return ch, nil
}

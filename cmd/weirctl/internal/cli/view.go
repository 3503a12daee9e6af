package cli

import (
	"fmt"
	"strconv"
	"time"

	"github.com/weirstream/weir/cmd/weirctl/internal/client"
)

// statePending is shown for a job no controller has picked up yet: its
// config is stored but it has no status.
const statePending = "Pending"

// jobView is weirctl's JSON for one job: the API's job plus the fields
// scripts look for most, flattened and derived. Fields are only ever
// added to it, never renamed or removed.
type jobView struct {
	ID             string     `json:"id"`
	Version        int64      `json:"version"`
	State          string     `json:"state"`
	RunID          int64      `json:"run_id"`
	Restarts       int        `json:"restarts"`
	TransitionedAt *time.Time `json:"transitioned_at"`
	// LastReadyEpoch is the newest ready checkpoint's epoch, 0 for none.
	LastReadyEpoch int64      `json:"last_ready_epoch"`
	LastReadyAt    *time.Time `json:"last_ready_at"`
	// LastHeartbeatAt is the last heartbeat of the run's least recently
	// heard worker, and HeartbeatAgeSeconds its age when weirctl read it;
	// null until a worker of the run is heard.
	LastHeartbeatAt     *time.Time `json:"last_heartbeat_at"`
	HeartbeatAgeSeconds *float64   `json:"heartbeat_age_seconds"`
	// RecordsPerSecond is RecordsInPerSec, kept for scripts that read it.
	RecordsPerSecond *float64 `json:"records_per_second"`
	RecordsInPerSec  *float64 `json:"records_in_per_sec"`
	RecordsOutPerSec *float64 `json:"records_out_per_sec"`
	// HealthTakenAt is when the controller took the health summary.
	HealthTakenAt *time.Time          `json:"health_taken_at"`
	LastError     *client.Failure     `json:"last_error"`
	Stop          string              `json:"stop"`
	Config        client.Config       `json:"config"`
	Status        *client.Status      `json:"status"`
	Checkpoints   []client.Checkpoint `json:"checkpoints"`
}

// listView is weirctl's JSON for many jobs.
type listView struct {
	Jobs []jobView `json:"jobs"`
}

// viewOf flattens a job as read at now (ages are computed from it).
func viewOf(j client.Job, now time.Time) jobView {
	v := jobView{
		ID: j.ID, Version: j.Version, State: statePending, Stop: j.Config.Stop,
		Config: j.Config, Status: j.Status, Checkpoints: j.Checkpoints,
	}
	if v.Checkpoints == nil {
		v.Checkpoints = []client.Checkpoint{}
	}
	st := j.Status
	if st == nil {
		return v
	}
	v.State, v.RunID, v.Restarts, v.LastError = st.State, st.RunID, st.Restarts, st.LastError
	v.TransitionedAt = timePtr(st.TransitionedAt)
	v.LastReadyEpoch, v.LastReadyAt = st.LastReadyEpoch, lastReadyAt(j)
	if h := st.Health; h != nil {
		if v.LastHeartbeatAt = timePtr(h.HeartbeatAt); v.LastHeartbeatAt != nil {
			age := max(now.Sub(h.HeartbeatAt), 0).Seconds()
			v.HeartbeatAgeSeconds = &age
		}
		in, out := h.RecordsInPerSec, h.RecordsOutPerSec
		v.RecordsPerSecond, v.RecordsInPerSec, v.RecordsOutPerSec = &in, &in, &out
		v.HealthTakenAt = timePtr(h.TakenAt)
	}
	return v
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// lastReadyAt is when the job's last ready epoch became ready: the
// status's time, or, for an epoch whose time the status lacks (one
// restored from an earlier controller's run), its checkpoint's.
func lastReadyAt(j client.Job) *time.Time {
	st := j.Status
	if t := timePtr(st.LastReadyAt); t != nil || st.LastReadyEpoch == 0 {
		return t
	}
	for _, cp := range j.Checkpoints {
		if cp.Epoch == st.LastReadyEpoch {
			return timePtr(cp.FinishedAt)
		}
	}
	return nil
}

// shortDuration writes d the way people read it at a glance: "850ms",
// "12s", "3m04s", "2h05m", "3d04h".
func shortDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, (d%time.Minute)/time.Second)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", d/time.Hour, (d%time.Hour)/time.Minute)
	}
	return fmt.Sprintf("%dd%02dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
}

// since is the age of *t at now, or "-".
func since(now time.Time, t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return shortDuration(now.Sub(*t))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runText is a job's run id and restarts, or dashes before it has a status.
func runText(v jobView) (run, restarts string) {
	if v.Status == nil {
		return "-", "-"
	}
	return strconv.FormatInt(v.RunID, 10), strconv.Itoa(v.Restarts)
}

func epochText(e int64) string {
	if e == 0 {
		return "-"
	}
	return strconv.FormatInt(e, 10)
}

// rateText is records in and out per second, "-" before the API
// reports them: "850/850", "12.5k/12.4k".
func rateText(in, out *float64) string {
	if in == nil || out == nil {
		return "-"
	}
	return compact(*in) + "/" + compact(*out)
}

func compact(f float64) string {
	switch {
	case f >= 1e6:
		return strconv.FormatFloat(f/1e6, 'f', 1, 64) + "M"
	case f >= 1e4:
		return strconv.FormatFloat(f/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(f, 'f', 0, 64)
}

// errorText is the last error with its age at now: "2m10s ago,
// internal: worker w-1 of job demo has sent nothing for …".
func errorText(f *client.Failure, now time.Time) string {
	if f == nil || f.Message == "" {
		return "-"
	}
	msg := f.Message
	if f.Domain != "" {
		msg = f.Domain + ": " + msg
	}
	if !f.At.IsZero() {
		msg = shortDuration(now.Sub(f.At)) + " ago, " + msg
	}
	return msg
}

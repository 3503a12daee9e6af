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
	// LastHeartbeatAt and RecordsPerSecond are null until the API reports them.
	LastHeartbeatAt  *time.Time          `json:"last_heartbeat_at"`
	RecordsPerSecond *float64            `json:"records_per_second"`
	LastError        *client.Failure     `json:"last_error"`
	Stop             string              `json:"stop"`
	Config           client.Config       `json:"config"`
	Status           *client.Status      `json:"status"`
	Checkpoints      []client.Checkpoint `json:"checkpoints"`
}

// listView is weirctl's JSON for many jobs.
type listView struct {
	Jobs []jobView `json:"jobs"`
}

func viewOf(j client.Job) jobView {
	v := jobView{
		ID: j.ID, Version: j.Version, State: statePending, Stop: j.Config.Stop,
		Config: j.Config, Status: j.Status, Checkpoints: j.Checkpoints,
	}
	if v.Checkpoints == nil {
		v.Checkpoints = []client.Checkpoint{}
	}
	if st := j.Status; st != nil {
		v.State, v.RunID, v.Restarts, v.LastError = st.State, st.RunID, st.Restarts, st.LastError
		if !st.TransitionedAt.IsZero() {
			t := st.TransitionedAt
			v.TransitionedAt = &t
		}
		v.LastHeartbeatAt, v.RecordsPerSecond = st.LastHeartbeatAt, st.RecordsPerSecond
	}
	v.LastReadyEpoch, v.LastReadyAt = lastReady(j)
	return v
}

// lastReady is the job's newest ready epoch and when it became ready. The
// status's own count wins when the API reports it; the checkpoints then
// give only its time.
func lastReady(j client.Job) (int64, *time.Time) {
	var epoch int64
	var at *time.Time
	for _, cp := range j.Checkpoints {
		if cp.State == "ready" && cp.Epoch > epoch {
			epoch = cp.Epoch
			at = nil
			if !cp.FinishedAt.IsZero() {
				t := cp.FinishedAt
				at = &t
			}
		}
	}
	if st := j.Status; st != nil && st.LastReadyEpoch != nil && *st.LastReadyEpoch != epoch {
		return *st.LastReadyEpoch, nil
	}
	return epoch, at
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

func rateText(r *float64) string {
	if r == nil {
		return "-"
	}
	return strconv.FormatFloat(*r, 'f', 0, 64)
}

func errorText(f *client.Failure) string {
	if f == nil || f.Message == "" {
		return "-"
	}
	if f.Domain != "" {
		return f.Domain + ": " + f.Message
	}
	return f.Message
}

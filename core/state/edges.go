package state

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/core/job"
)

// edge is one allowed transition, with the side effect that belongs to it.
type edge struct {
	from, to job.State
	effect   func(st *job.Status, now time.Time)
}

// edges is every allowed transition, in one place. The Machine refuses any
// other; a test checks every transition the states return against it.
var edges = []edge{
	{job.Created, job.Scheduling, newRun},
	{job.Created, job.Stopped, nil},
	{job.Created, job.Stopping, nil},
	{job.Created, job.Failing, nil},

	{job.Scheduling, job.Running, startedRunning},
	{job.Scheduling, job.Stopping, nil},
	{job.Scheduling, job.Restarting, nil},
	{job.Scheduling, job.Recovering, countRestart},
	{job.Scheduling, job.Failing, nil},

	{job.Running, job.CheckpointStopping, nil},
	{job.Running, job.Stopping, nil},
	{job.Running, job.Finishing, nil},
	{job.Running, job.Rescaling, nil},
	{job.Running, job.Restarting, nil},
	{job.Running, job.Recovering, countRestart},
	{job.Running, job.Failing, nil},

	{job.CheckpointStopping, job.Stopping, nil},
	{job.CheckpointStopping, job.Stopped, nil},
	{job.CheckpointStopping, job.Failing, nil},

	{job.Stopping, job.Stopped, nil},
	{job.Stopping, job.Failing, nil},

	{job.Finishing, job.Finished, nil},
	{job.Finishing, job.Stopping, nil},
	{job.Finishing, job.Recovering, countRestart},
	{job.Finishing, job.Failing, nil},

	{job.Rescaling, job.Scheduling, newRun},
	{job.Rescaling, job.Stopping, nil},
	{job.Rescaling, job.Stopped, nil},
	{job.Rescaling, job.Recovering, countRestart},
	{job.Rescaling, job.Failing, nil},

	{job.Restarting, job.Scheduling, newRun},
	{job.Restarting, job.Stopping, nil},
	{job.Restarting, job.Stopped, nil},
	{job.Restarting, job.Recovering, countRestart},
	{job.Restarting, job.Failing, nil},

	{job.Recovering, job.Scheduling, newRun},
	{job.Recovering, job.Stopping, nil},
	{job.Recovering, job.Failing, nil},

	{job.Failing, job.Failed, nil},
	{job.Failing, job.Stopping, nil},

	{job.Failed, job.Scheduling, freshStart},
	{job.Stopped, job.Scheduling, freshStart},
	{job.Finished, job.Scheduling, freshStart},
}

func findEdge(from, to job.State) (edge, error) {
	for _, e := range edges {
		if e.from == from && e.to == to {
			return e, nil
		}
	}
	return edge{}, fmt.Errorf("transition %s → %s is not allowed", from, to)
}

// newRun: every scheduling starts a new generation of workers, so messages
// from earlier runs can be recognised and ignored.
func newRun(st *job.Status, _ time.Time) { st.RunID++ }

// freshStart: a job scheduled again from rest starts with a clean slate,
// its TTL counting from the new start (else a restart after the TTL ran out
// would launch a run only to stop it at once).
func freshStart(st *job.Status, now time.Time) {
	newRun(st, now)
	st.Restarts = 0
	st.Failure = nil
	st.StartedAt = time.Time{}
}

func startedRunning(st *job.Status, now time.Time) {
	st.RunStartedAt = now
	if st.StartedAt.IsZero() {
		st.StartedAt = now
	}
}

// countRestart: each entry to Recovering is a restart.
func countRestart(st *job.Status, _ time.Time) { st.Restarts++ }

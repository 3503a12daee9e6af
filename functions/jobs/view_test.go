package jobs_test

import (
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
)

// A job's read shows the newest ready epoch even when the controller has
// not yet written it into the status (it does at most once a minute); the
// list, which reads no checkpoints, shows the status's own.
func TestGetShowsTheNewestReadyEpoch(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	if _, err := e.svc.Create(ctx, cfg("a", 0)); err != nil {
		t.Fatal(err)
	}
	at := e.now.Add(-time.Minute)
	if _, err := e.store.PutStatus(ctx, 1, job.Status{JobID: "a", State: job.Running, LastReadyEpoch: 3, LastReadyAt: at}); err != nil {
		t.Fatal(err)
	}
	for epoch := int64(1); epoch <= 6; epoch++ {
		cp := job.Checkpoint{JobID: "a", Epoch: epoch, State: job.CheckpointReady, StartedAt: at, FinishedAt: at.Add(time.Duration(epoch) * time.Second)}
		if epoch == 6 {
			cp.State, cp.FinishedAt = job.CheckpointInProgress, time.Time{}
		}
		if err := e.store.CreateCheckpoint(ctx, 1, cp); err != nil {
			t.Fatal(err)
		}
	}
	v, err := e.svc.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if st := v.Status; st.LastReadyEpoch != 5 || !st.LastReadyAt.Equal(at.Add(5*time.Second)) {
		t.Errorf("get: last ready %d at %s, want 5 at %s (the newest ready checkpoint)", st.LastReadyEpoch, st.LastReadyAt, at.Add(5*time.Second))
	}
	list, _, err := e.svc.List(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Status == nil || list[0].Status.LastReadyEpoch != 3 {
		t.Errorf("list: %+v, want the stored status's epoch 3", list)
	}

	// A status ahead of the checkpoints it was read with keeps its own.
	st, err := e.store.GetStatus(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	st.LastReadyEpoch, st.LastReadyAt = 9, e.now
	if _, err := e.store.PutStatus(ctx, 1, st); err != nil {
		t.Fatal(err)
	}
	if v, err := e.svc.Get(ctx, "a"); err != nil || v.Status.LastReadyEpoch != 9 || !v.Status.LastReadyAt.Equal(e.now) {
		t.Errorf("get: %+v (%v), want the status's epoch 9", v.Status, err)
	}
}

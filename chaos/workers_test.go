package chaos

import (
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
)

// The simulated workers speak protocol v2 as the worker SDK does: every
// envelope carries the worker's slots and whole state, checkpoints and
// commits are state that only moves forward, and a failed subtask stays
// failed for the rest of its run.
func TestWorkersSendProtocolV2(t *testing.T) {
	w := newWorkers(nil, nil, 1, workerTiming{Poll: 400 * time.Millisecond, Heartbeat: 500 * time.Millisecond, FinishedFor: 2 * time.Second})
	cmds := job.Commands{JobID: "j", RunID: 3, Start: &job.StartCommand{Assignments: []job.TaskAssignment{
		{WorkerID: "w-0", OperatorID: sourceOperator, Subtask: 0},
		{WorkerID: "w-0", OperatorID: sinkOperator, Subtask: 0},
		{WorkerID: "w-1", OperatorID: sourceOperator, Subtask: 1},
	}}}
	t0 := time.Unix(1000, 0)
	decode := func(bodies [][]byte) map[string]*protocol.Envelope {
		t.Helper()
		out := map[string]*protocol.Envelope{}
		for _, b := range bodies {
			env, err := protocol.Decode(b)
			if err != nil {
				t.Fatalf("the controller's decoder refuses an envelope: %v\n%s", err, b)
			}
			if env.V != protocol.V2 || env.Heartbeat != nil {
				t.Fatalf("envelope of version %d (heartbeat %v), want v2: %s", env.V, env.Heartbeat, b)
			}
			out[env.WorkerID] = env
		}
		return out
	}
	task := func(env *protocol.Envelope, op string, sub int) protocol.Task {
		t.Helper()
		for _, tk := range env.Tasks {
			if tk.Operator == op && tk.Subtask == sub {
				return tk
			}
		}
		t.Fatalf("envelope of %s lacks %s/%d: %+v", env.WorkerID, op, sub, env.Tasks)
		return protocol.Task{}
	}

	first := decode(w.envelopes("j", cmds, t0))
	if len(first) != 2 || first["w-0"].Slots != 2 || first["w-1"].Slots != 1 || first["w-0"].RunID != 3 {
		t.Fatalf("first envelopes: %+v", first)
	}
	if got := task(first["w-0"], sinkOperator, 0); got.State != protocol.Running {
		t.Fatalf("sink 0 is %s at start, want running", got.State)
	}
	// Nothing changed and no heartbeat is due: nothing is sent.
	if again := w.envelopes("j", cmds, t0.Add(100*time.Millisecond)); len(again) != 0 {
		t.Fatalf("%d envelopes sent with nothing to tell before the heartbeat", len(again))
	}

	// A checkpoint completes (within 600 ms of being read) and is
	// committed; w-1's task fails.
	cmds.Checkpoint = &job.CheckpointCommand{Epoch: 4}
	w.envelopes("j", cmds, t0.Add(time.Second))
	w.mu.Lock()
	w.jobs["j"].fail["w-1"] = true
	w.mu.Unlock()
	cmds.Commit = &job.CommitCommand{Epoch: 4}
	later := decode(w.envelopes("j", cmds, t0.Add(2*time.Second)))
	if got := task(later["w-0"], sourceOperator, 0); got.Checkpointed != 4 || got.CheckpointMetadata == "" {
		t.Errorf("source 0 after the checkpoint: %+v, want checkpointed 4 with metadata", got)
	}
	if got := task(later["w-0"], sinkOperator, 0); got.Committed != 4 {
		t.Errorf("sink 0 after the commit: %+v, want committed 4", got)
	}
	if got := task(later["w-1"], sourceOperator, 1); got.State != protocol.Failed || got.Retry != protocol.RetryBackoff {
		t.Errorf("w-1's task after the injected failure: %+v, want failed, retryable", got)
	}

	// The next checkpoint is not done yet: the newest completed one is
	// still reported, and the failed task stays failed.
	cmds.Checkpoint = &job.CheckpointCommand{Epoch: 5}
	w.mu.Lock()
	w.jobs["j"].epochDelay[5], w.jobs["j"].epochSeen[5] = time.Hour, t0.Add(3*time.Second)
	w.mu.Unlock()
	next := decode(w.envelopes("j", cmds, t0.Add(3*time.Second)))
	if got := task(next["w-0"], sourceOperator, 0); got.Checkpointed != 4 {
		t.Errorf("source 0 while epoch 5 is in flight: checkpointed %d, want 4", got.Checkpointed)
	}
	if got := task(next["w-1"], sourceOperator, 1); got.State != protocol.Failed {
		t.Errorf("w-1's failed task became %s", got.State)
	}

	// A command record read a moment old names the previous run: the
	// workers of this run carry on, nothing is sent for the old one.
	old := cmds
	old.RunID = 2
	if bodies := w.envelopes("j", old, t0.Add(4*time.Second)); len(bodies) != 0 {
		t.Errorf("%d envelopes sent for a run older than the current one", len(bodies))
	}
	if w.jobs["j"].run != 3 {
		t.Errorf("the workers moved back to run %d", w.jobs["j"].run)
	}
}

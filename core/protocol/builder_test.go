package protocol

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func newBuilder(t *testing.T) *Builder {
	t.Helper()
	b, err := NewBuilder("orders-enrich", 3, "w-1", 4, BuilderOptions{Heartbeat: 5 * time.Second, Linger: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeAll(t *testing.T, bodies [][]byte) []*Envelope {
	t.Helper()
	envs := make([]*Envelope, len(bodies))
	for i, body := range bodies {
		env, err := Decode(body)
		if err != nil {
			t.Fatalf("body %d does not decode: %v", i, err)
		}
		envs[i] = env
	}
	return envs
}

func flush(t *testing.T, b *Builder, now time.Time) []*Envelope {
	t.Helper()
	bodies, err := b.Flush(now)
	if err != nil {
		t.Fatal(err)
	}
	return decodeAll(t, bodies)
}

func setTask(t *testing.T, b *Builder, now time.Time, task Task) {
	t.Helper()
	if err := b.SetTask(now, task); err != nil {
		t.Fatal(err)
	}
}

func woke(b *Builder) bool {
	select {
	case <-b.Wake():
		return true
	default:
		return false
	}
}

func TestBuilderHeartbeatCadence(t *testing.T) {
	b := newBuilder(t)
	t0 := sentAt
	if !b.Due().IsZero() {
		t.Fatalf("first envelope due at %v, want at once", b.Due())
	}
	envs := flush(t, b, t0)
	if len(envs) != 1 || envs[0].V != V2 || envs[0].Seq != 1 || envs[0].Slots != 4 || envs[0].Tasks != nil || envs[0].Events != nil {
		t.Fatalf("first flush = %v, want one v2 envelope with seq 1, 4 slots and nothing else", envs)
	}
	if want := t0.Add(5 * time.Second); !b.Due().Equal(want) {
		t.Fatalf("due %v, want %v", b.Due(), want)
	}

	// Informational news and new counters wait for the heartbeat.
	if err := b.Add(Event{Kind: CheckpointEvent, Operator: "src", Epoch: 1, Phase: PhaseCheckpointStarted}); err != nil {
		t.Fatal(err)
	}
	setTask(t, b, t0.Add(time.Second), Task{Operator: "src", State: Scheduled, RecordsIn: 5})
	if want := t0.Add(5 * time.Second); !b.Due().Equal(want) || woke(b) {
		t.Fatalf("non-urgent news moved due to %v or woke the sender", b.Due())
	}

	envs = flush(t, b, t0.Add(5*time.Second))
	if len(envs) != 1 || envs[0].Seq != 2 || len(envs[0].Events) != 1 || len(envs[0].Tasks) != 1 || !envs[0].SentAt.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("second flush = %v", envs)
	}
	if b.Pending() != 0 {
		t.Fatalf("%d events still pending after Flush", b.Pending())
	}
	// The state stays: the next envelope carries it again, the event does not.
	envs = flush(t, b, t0.Add(10*time.Second))
	if len(envs[0].Tasks) != 1 || envs[0].Tasks[0].RecordsIn != 5 || envs[0].Events != nil {
		t.Fatalf("third flush = %v, want the task again and no event", envs)
	}
}

func TestBuilderStateChangesComeEarly(t *testing.T) {
	b := newBuilder(t)
	t0 := sentAt
	flush(t, b, t0)
	setTask(t, b, t0, Task{Operator: "src", Subtask: 0, State: Running})
	setTask(t, b, t0, Task{Operator: "src", Subtask: 1, State: Running})
	flush(t, b, t0.Add(100*time.Millisecond))
	woke(b)

	at := t0.Add(2 * time.Second)
	setTask(t, b, at, Task{Operator: "src", Subtask: 0, State: Running, Checkpointed: 4, CheckpointBytes: 10})
	if !woke(b) {
		t.Fatal("a checkpoint completion did not wake the sender")
	}
	// More urgent news within the linger joins the first without moving the
	// deadline or waking the sender again.
	setTask(t, b, at.Add(50*time.Millisecond), Task{Operator: "src", Subtask: 1, State: Running, Checkpointed: 4})
	if want := at.Add(100 * time.Millisecond); !b.Due().Equal(want) {
		t.Fatalf("due %v, want %v (linger after the first urgent change)", b.Due(), want)
	}
	if woke(b) {
		t.Fatal("second urgent change woke the sender again")
	}
	envs := flush(t, b, at.Add(100*time.Millisecond))
	if len(envs) != 1 || len(envs[0].Tasks) != 2 || envs[0].Tasks[0].Checkpointed != 4 || envs[0].Tasks[1].Checkpointed != 4 {
		t.Fatalf("urgent flush = %v, want both completions in one envelope", envs)
	}
	// The heartbeat interval restarts from the urgent envelope.
	if want := at.Add(100*time.Millisecond + 5*time.Second); !b.Due().Equal(want) {
		t.Fatalf("due %v after an urgent flush, want %v", b.Due(), want)
	}
	// Each kind of change the controller waits on is urgent.
	for _, task := range []Task{
		{Operator: "src", Subtask: 0, State: Running, Checkpointed: 4, Committed: 4},
		{Operator: "src", Subtask: 0, State: Finished, Checkpointed: 4, Committed: 4},
		{Operator: "src", Subtask: 1, State: Failed, Checkpointed: 4, Error: "boom", Domain: "user", Retry: RetryNone},
	} {
		setTask(t, b, at, task)
		if !woke(b) {
			t.Errorf("%+v did not wake the sender", task)
		}
		flush(t, b, at)
	}
}

func TestBuilderSetTaskLaterWaitsForTheHeartbeat(t *testing.T) {
	b := newBuilder(t)
	flush(t, b, sentAt)
	if err := b.SetTaskLater(Task{Operator: "sink", State: Running, Checkpointed: 3, Committed: 3}); err != nil {
		t.Fatal(err)
	}
	if want := sentAt.Add(5 * time.Second); !b.Due().Equal(want) || woke(b) {
		t.Fatalf("due %v, want the heartbeat at %v without a wake-up", b.Due(), want)
	}
	if got := flush(t, b, b.Due())[0].Tasks; len(got) != 1 || got[0].Committed != 3 {
		t.Fatalf("tasks = %+v, want the commit in the heartbeat", got)
	}
	assertFieldError(t, b.SetTaskLater(Task{Operator: "sink", State: Running, Checkpointed: 3, Committed: 2}), "task.committed", "went back")
}

func TestBuilderLingerNeverPassesTheHeartbeat(t *testing.T) {
	b, err := NewBuilder("j", 1, "w", 1, BuilderOptions{Heartbeat: time.Second, Linger: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	flush(t, b, sentAt)
	setTask(t, b, sentAt.Add(500*time.Millisecond), Task{Operator: "o", State: Running})
	if want := sentAt.Add(time.Second); !b.Due().Equal(want) {
		t.Fatalf("due %v, want the heartbeat at %v", b.Due(), want)
	}
}

func TestBuilderTaskIsLatestPerSubtask(t *testing.T) {
	b := newBuilder(t)
	for _, task := range []Task{
		{Operator: "src", Subtask: 0, State: Running, RecordsIn: 1},
		{Operator: "src", Subtask: 1, State: Running, RecordsIn: 5},
		{Operator: "src", Subtask: 0, State: Running, RecordsIn: 2},
	} {
		setTask(t, b, sentAt, task)
	}
	got := flush(t, b, sentAt)[0].Tasks
	if len(got) != 2 || got[0].RecordsIn != 2 || got[1].RecordsIn != 5 {
		t.Fatalf("tasks = %+v, want src/0 at 2 then src/1 at 5", got)
	}
	if task, ok := b.Task("src", 1); !ok || task.RecordsIn != 5 {
		t.Fatalf("Task(src, 1) = %+v, %v", task, ok)
	}
	if _, ok := b.Task("src", 2); ok {
		t.Fatal("Task(src, 2) found a subtask never set")
	}
}

func TestBuilderRejectsBadInputAtOnce(t *testing.T) {
	b := newBuilder(t)
	err := b.Add(Event{Kind: CheckpointEvent, Operator: "src", Phase: PhaseSyncFinished})
	assertFieldError(t, err, "event.epoch", "must be at least 1")
	err = b.Add(Event{Kind: CheckpointCompleted, Operator: "src", Epoch: 1})
	assertFieldError(t, err, "event.kind", "tasks[].checkpointed")
	err = b.SetTask(sentAt, Task{Operator: "src", State: Running, Backpressure: 2})
	assertFieldError(t, err, "task.backpressure", "0 to 1")
	err = b.SetTask(sentAt, Task{Operator: "src", State: Failed, Error: "x"})
	assertFieldError(t, err, "task.domain", "missing")
	if b.Pending() != 0 {
		t.Fatal("a rejected event was queued")
	}

	// A state or epoch never goes back.
	setTask(t, b, sentAt, Task{Operator: "src", State: Finished, Checkpointed: 5, Committed: 5})
	for _, c := range []struct {
		task  Task
		field string
	}{
		{Task{Operator: "src", State: Running, Checkpointed: 5, Committed: 5}, "task.state"},
		{Task{Operator: "src", State: Failed, Checkpointed: 5, Committed: 5, Error: "x", Domain: "user", Retry: RetryNone}, "task.state"},
		{Task{Operator: "src", State: Finished, Checkpointed: 4, Committed: 5}, "task.checkpointed"},
		{Task{Operator: "src", State: Finished, Checkpointed: 5, Committed: 4}, "task.committed"},
	} {
		assertFieldError(t, b.SetTask(sentAt, c.task), c.field, "")
	}

	_, err = NewBuilder("j", 0, "w", 1, BuilderOptions{})
	assertFieldError(t, err, "run", "at least 1")
	_, err = NewBuilder("j", 1, "", 1, BuilderOptions{})
	assertFieldError(t, err, "worker", "missing")
	_, err = NewBuilder("j", 1, "w", 0, BuilderOptions{})
	assertFieldError(t, err, "slots", "from 1 to")
	if _, err = NewBuilder("j", 1, "w", 1, BuilderOptions{Linger: -time.Second}); err == nil {
		t.Fatal("negative linger accepted")
	}
}

func TestBuilderSplitsStateThatDoesNotFit(t *testing.T) {
	cases := []struct {
		name   string
		fill   func(b *Builder)
		events int
		tasks  int
		envs   int
	}{
		{"too many events", func(b *Builder) {
			for i := range MaxEvents + 10 {
				if err := b.Add(Event{Kind: CheckpointEvent, Operator: "o", Subtask: i % 4096, Epoch: 1, Phase: PhaseSyncFinished}); err != nil {
					t.Fatal(err)
				}
			}
		}, MaxEvents + 10, 0, 2},
		{"too many bytes", func(b *Builder) {
			for i := range 40 {
				if err := b.SetTask(sentAt, Task{Operator: "o", Subtask: i, State: Failed,
					Error: strings.Repeat("e", MaxErrorBytes), Domain: "user", Retry: RetryNone}); err != nil {
					t.Fatal(err)
				}
			}
		}, 0, 40, 3},
		{"too many tasks", func(b *Builder) {
			for i := range MaxTasks + 1 {
				if err := b.SetTask(sentAt, Task{Operator: fmt.Sprintf("operator-%d", i%7), Subtask: i, State: Running,
					RecordsIn: 1 << 60, Checkpointed: 1 << 40, Committed: 1 << 40}); err != nil {
					t.Fatal(err)
				}
			}
		}, 0, MaxTasks + 1, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBuilder(t)
			flush(t, b, sentAt)
			c.fill(b)
			bodies, err := b.Flush(sentAt.Add(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			envs := decodeAll(t, bodies)
			if len(envs) != c.envs {
				t.Fatalf("%d envelopes, want %d", len(envs), c.envs)
			}
			events, tasks := 0, 0
			for i, env := range envs {
				if len(bodies[i]) > MaxEnvelopeBytes {
					t.Fatalf("envelope %d is %d bytes", i, len(bodies[i]))
				}
				if env.Seq != uint64(i+2) || env.Slots != 4 {
					t.Fatalf("envelope %d has seq %d and %d slots, want %d and 4", i, env.Seq, env.Slots, i+2)
				}
				for _, ev := range env.Events {
					if ev.Subtask != events%4096 {
						t.Fatalf("event %d out of order: subtask %d", events, ev.Subtask)
					}
					events++
				}
				for _, task := range env.Tasks {
					if task.Subtask != tasks {
						t.Fatalf("task %d out of order: subtask %d", tasks, task.Subtask)
					}
					tasks++
				}
			}
			if events != c.events || tasks != c.tasks {
				t.Fatalf("%d events and %d tasks sent, want %d and %d", events, tasks, c.events, c.tasks)
			}
			// The next flush continues the sequence.
			if next := flush(t, b, sentAt.Add(2*time.Second)); next[0].Seq != uint64(len(envs)+2) {
				t.Fatalf("next seq %d, want %d", next[0].Seq, len(envs)+2)
			}
		})
	}
}

func TestBuilderConcurrentUse(t *testing.T) {
	b := newBuilder(t)
	const tasks, each = 8, 200
	var wg sync.WaitGroup
	for task := range tasks {
		wg.Go(func() {
			for i := range each {
				ev := Event{Kind: CheckpointEvent, Operator: "op", Subtask: task, Epoch: int64(i + 1), Phase: PhaseSyncFinished}
				if err := b.Add(ev); err != nil {
					t.Error(err)
					return
				}
				if err := b.SetTask(sentAt, Task{Operator: "op", Subtask: task, State: Running, Checkpointed: int64(i + 1)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	seen := map[[2]int64]bool{}
	var lastSeq uint64
	collect := func() {
		for _, env := range flush(t, b, sentAt) {
			if env.Seq <= lastSeq {
				t.Fatalf("seq %d after %d", env.Seq, lastSeq)
			}
			lastSeq = env.Seq
			for _, ev := range env.Events {
				k := [2]int64{int64(ev.Subtask), ev.Epoch}
				if seen[k] {
					t.Fatalf("event %v sent twice", k)
				}
				seen[k] = true
			}
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		collect()
	}
	collect()
	if len(seen) != tasks*each {
		t.Fatalf("%d events arrived, want %d", len(seen), tasks*each)
	}
	for task := range tasks {
		if got, _ := b.Task("op", task); got.Checkpointed != each {
			t.Errorf("op/%d checkpointed %d, want %d", task, got.Checkpointed, each)
		}
	}
}

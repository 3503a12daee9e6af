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
	b, err := NewBuilder("orders-enrich", 3, "w-1", BuilderOptions{Heartbeat: 5 * time.Second, Linger: 100 * time.Millisecond})
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

func TestBuilderHeartbeatCadence(t *testing.T) {
	b := newBuilder(t)
	t0 := sentAt
	if !b.Due().IsZero() {
		t.Fatalf("first envelope due at %v, want at once", b.Due())
	}
	envs := flush(t, b, t0)
	if len(envs) != 1 || envs[0].Seq != 1 || envs[0].Heartbeat == nil || envs[0].Events != nil {
		t.Fatalf("first flush = %v, want one bare heartbeat with seq 1", envs)
	}
	if want := t0.Add(5 * time.Second); !b.Due().Equal(want) {
		t.Fatalf("due %v, want %v", b.Due(), want)
	}

	// Informational news waits for the heartbeat.
	if err := b.Add(t0.Add(time.Second), Event{Kind: CheckpointEvent, Operator: "src", Epoch: 1, Phase: PhaseCheckpointStarted}); err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(5 * time.Second); !b.Due().Equal(want) {
		t.Fatalf("non-urgent event moved due to %v", b.Due())
	}
	select {
	case <-b.Wake():
		t.Fatal("non-urgent event woke the sender")
	default:
	}

	envs = flush(t, b, t0.Add(5*time.Second))
	if len(envs) != 1 || envs[0].Seq != 2 || len(envs[0].Events) != 1 || !envs[0].SentAt.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("second flush = %v", envs)
	}
	if b.Pending() != 0 {
		t.Fatalf("%d events still pending after Flush", b.Pending())
	}
}

func TestBuilderUrgentNewsComesEarly(t *testing.T) {
	b := newBuilder(t)
	t0 := sentAt
	flush(t, b, t0)

	at := t0.Add(2 * time.Second)
	if err := b.Add(at, Event{Kind: CheckpointCompleted, Operator: "src", Subtask: 0, Epoch: 4}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Wake():
	default:
		t.Fatal("urgent event did not wake the sender")
	}
	// More urgent news within the linger joins the first without moving the
	// deadline or waking the sender again.
	if err := b.Add(at.Add(50*time.Millisecond), Event{Kind: CheckpointCompleted, Operator: "src", Subtask: 1, Epoch: 4}); err != nil {
		t.Fatal(err)
	}
	if want := at.Add(100 * time.Millisecond); !b.Due().Equal(want) {
		t.Fatalf("due %v, want %v (linger after the first urgent event)", b.Due(), want)
	}
	select {
	case <-b.Wake():
		t.Fatal("second urgent event woke the sender again")
	default:
	}
	envs := flush(t, b, at.Add(100*time.Millisecond))
	if len(envs) != 1 || len(envs[0].Events) != 2 {
		t.Fatalf("urgent flush = %v, want both completions in one envelope", envs)
	}
	// The heartbeat interval restarts from the urgent envelope.
	if want := at.Add(100*time.Millisecond + 5*time.Second); !b.Due().Equal(want) {
		t.Fatalf("due %v after an urgent flush, want %v", b.Due(), want)
	}
}

func TestBuilderLingerNeverPassesTheHeartbeat(t *testing.T) {
	b, err := NewBuilder("j", 1, "w", BuilderOptions{Heartbeat: time.Second, Linger: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	flush(t, b, sentAt)
	if err := b.Add(sentAt.Add(500*time.Millisecond), Event{Kind: TaskStarted, Operator: "o"}); err != nil {
		t.Fatal(err)
	}
	if want := sentAt.Add(time.Second); !b.Due().Equal(want) {
		t.Fatalf("due %v, want the heartbeat at %v", b.Due(), want)
	}
}

func TestBuilderMetricsAreLatestPerSubtask(t *testing.T) {
	b := newBuilder(t)
	for _, m := range []TaskMetrics{
		{Operator: "src", Subtask: 0, RecordsIn: 1},
		{Operator: "src", Subtask: 1, RecordsIn: 5},
		{Operator: "src", Subtask: 0, RecordsIn: 2},
	} {
		if err := b.SetMetrics(m); err != nil {
			t.Fatal(err)
		}
	}
	envs := flush(t, b, sentAt)
	got := envs[0].Heartbeat.Metrics
	if len(got) != 2 || got[0].RecordsIn != 2 || got[1].RecordsIn != 5 {
		t.Fatalf("metrics = %+v, want src/0 at 2 then src/1 at 5", got)
	}
	if envs := flush(t, b, sentAt.Add(5*time.Second)); envs[0].Heartbeat.Metrics != nil {
		t.Fatalf("metrics carried over to the next flush: %+v", envs[0].Heartbeat.Metrics)
	}
}

func TestBuilderRejectsBadInputAtOnce(t *testing.T) {
	b := newBuilder(t)
	err := b.Add(sentAt, Event{Kind: CheckpointCompleted, Operator: "src"})
	assertFieldError(t, err, "event.epoch", "must be at least 1")
	err = b.SetMetrics(TaskMetrics{Operator: "src", Backpressure: 2})
	assertFieldError(t, err, "metrics.backpressure", "0 to 1")
	if b.Pending() != 0 {
		t.Fatal("a rejected event was queued")
	}

	_, err = NewBuilder("j", 0, "w", BuilderOptions{})
	assertFieldError(t, err, "run", "at least 1")
	_, err = NewBuilder("j", 1, "", BuilderOptions{})
	assertFieldError(t, err, "worker", "missing")
	if _, err = NewBuilder("j", 1, "w", BuilderOptions{Linger: -time.Second}); err == nil {
		t.Fatal("negative linger accepted")
	}
}

func TestBuilderSplitsNewsThatDoesNotFit(t *testing.T) {
	cases := []struct {
		name   string
		fill   func(b *Builder)
		events int
		envs   int
	}{
		{"too many events", func(b *Builder) {
			for i := range MaxEvents + 10 {
				if err := b.Add(sentAt, Event{Kind: TaskStarted, Operator: "o", Subtask: i % 4096}); err != nil {
					t.Fatal(err)
				}
			}
		}, MaxEvents + 10, 2},
		{"too many bytes", func(b *Builder) {
			for i := range 40 {
				if err := b.Add(sentAt, Event{Kind: TaskFailed, Operator: "o", Subtask: i,
					Error: strings.Repeat("e", MaxErrorBytes), Domain: "user", Retry: RetryNone}); err != nil {
					t.Fatal(err)
				}
			}
		}, 40, 3},
		{"too many metrics", func(b *Builder) {
			for i := range MaxMetrics {
				if err := b.SetMetrics(TaskMetrics{Operator: fmt.Sprintf("operator-%d", i%7), Subtask: i,
					RecordsIn: 1 << 60, RecordsOut: 1 << 60, BytesIn: 1 << 62, BytesOut: 1 << 62, Backpressure: 0.123456789, WatermarkMs: 1 << 50}); err != nil {
					t.Fatal(err)
				}
			}
		}, 0, 2},
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
			events, metrics := 0, 0
			for i, env := range envs {
				if len(bodies[i]) > MaxEnvelopeBytes {
					t.Fatalf("envelope %d is %d bytes", i, len(bodies[i]))
				}
				if env.Seq != uint64(i+2) {
					t.Fatalf("envelope %d has seq %d, want %d", i, env.Seq, i+2)
				}
				for _, ev := range env.Events {
					if ev.Subtask != events%4096 {
						t.Fatalf("event %d out of order: subtask %d", events, ev.Subtask)
					}
					events++
				}
				metrics += len(env.Heartbeat.Metrics)
			}
			if events != c.events {
				t.Fatalf("%d events sent, want %d", events, c.events)
			}
			if c.events == 0 && metrics != MaxMetrics {
				t.Fatalf("%d metrics sent, want %d", metrics, MaxMetrics)
			}
			// The next envelope continues the sequence.
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
				ev := Event{Kind: CheckpointCompleted, Operator: "op", Subtask: task, Epoch: int64(i + 1)}
				if err := b.Add(sentAt, ev); err != nil {
					t.Error(err)
					return
				}
				if err := b.SetMetrics(TaskMetrics{Operator: "op", Subtask: task, RecordsIn: uint64(i)}); err != nil {
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
}

package worker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
)

// twoFakeQueues is an UrgentPublisher over two fake queues.
type twoFakeQueues struct{ routine, urgent *fakePublisher }

func (q *twoFakeQueues) Publish(ctx context.Context, body []byte) error {
	return q.routine.Publish(ctx, body)
}

func (q *twoFakeQueues) PublishUrgent(ctx context.Context, body []byte) error {
	return q.urgent.Publish(ctx, body)
}

// newUrgentHarness is newHarness with a worker that publishes to two
// queues; h.pub is the routine one.
func newUrgentHarness(t *testing.T) (*harness, *twoFakeQueues) {
	t.Helper()
	h := newHarness(t, Options{})
	q := &twoFakeQueues{routine: h.pub, urgent: &fakePublisher{}}
	w, err := New(testIdentity(), h.prog, q, h.cmds, Options{Clock: h.clk})
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	return h, q
}

func taskOf(t *testing.T, env *protocol.Envelope, op string) protocol.Task {
	t.Helper()
	for _, task := range env.Tasks {
		if task.Operator == op {
			return task
		}
	}
	t.Fatalf("envelope %v has no %s", env, op)
	return protocol.Task{}
}

func TestOnlyNewFailuresAndFinishedSourcesGoToTheUrgentQueue(t *testing.T) {
	h, q := newUrgentHarness(t)
	h.run()
	h.startRun(0)
	h.advance(time.Second)
	if err := h.prog.reporter.SetMetrics(Subtask{"src", 0}, Metrics{RecordsIn: 3}); err != nil {
		t.Fatal(err)
	}
	h.advance(21 * time.Second) // a heartbeat with the metrics
	if n := len(q.urgent.sent()); n != 0 {
		t.Fatalf("%d envelopes on the urgent queue before any news; registration, start and heartbeats are routine", n)
	}
	routine := len(q.routine.sent())
	if routine < 3 {
		t.Fatalf("%d routine envelopes; want registration, start and a heartbeat", routine)
	}

	if err := h.prog.reporter.Fail(Subtask{"src", 0}, Retryable(job.DomainExternal, errors.New("disk full"))); err != nil {
		t.Fatal(err)
	}
	h.advance(time.Second)
	urgent := q.urgent.sent()
	if len(urgent) != 1 || taskOf(t, urgent[0], "src").State != protocol.Failed {
		t.Fatalf("urgent queue got %v; want one envelope with src failed", urgent)
	}
	if n := len(q.routine.sent()); n != routine {
		t.Fatalf("the failure also went to the routine queue (%d envelopes, was %d)", n, routine)
	}

	// The failure stays in every later envelope, but it is news no more.
	h.advance(21 * time.Second)
	if n := len(q.urgent.sent()); n != 1 {
		t.Fatalf("%d urgent envelopes after a heartbeat; want still 1", n)
	}
	last := q.routine.last()
	if last.Seq <= urgent[0].Seq || taskOf(t, last, "src").State != protocol.Failed {
		t.Fatalf("heartbeat after the failure = %v; want a later seq, src still failed", last)
	}

	// A subtask that ran out of input is news too.
	if err := h.prog.reporter.Finish(Subtask{"sink", 0}); err != nil {
		t.Fatal(err)
	}
	h.advance(time.Second)
	urgent = q.urgent.sent()
	if len(urgent) != 2 || taskOf(t, urgent[1], "sink").State != protocol.Finished {
		t.Fatalf("urgent queue got %v; want a second envelope with sink finished", urgent)
	}
	// Finishing again, or failing a finished subtask, changes nothing.
	if err := h.prog.reporter.Finish(Subtask{"sink", 0}); err != nil {
		t.Fatal(err)
	}
	_ = h.prog.reporter.Fail(Subtask{"src", 0}, errors.New("again"))
	h.advance(21 * time.Second)
	if n := len(q.urgent.sent()); n != 2 {
		t.Fatalf("%d urgent envelopes; repeated reports are not news", n)
	}
}

func TestStopsFinishOnTheRoutineQueue(t *testing.T) {
	h, q := newUrgentHarness(t)
	h.run()
	h.startRun(0)
	h.advance(time.Second)
	h.cmds.write(func(c *job.Commands) { c.Stop = &job.StopCommand{Mode: job.StopImmediate} })
	h.advance(11 * time.Second)
	if err := h.result(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := taskOf(t, q.routine.last(), "src").State; got != protocol.Finished {
		t.Fatalf("src = %s in the last routine envelope; want finished", got)
	}
	if n := len(q.urgent.sent()); n != 0 {
		t.Fatalf("%d envelopes on the urgent queue; a stop the controller asked for is routine", n)
	}
}

func TestStartFailureGoesToTheUrgentQueue(t *testing.T) {
	h, q := newUrgentHarness(t)
	h.prog.startErr = Fatal(job.DomainUser, errors.New("cannot load program p"))
	h.run()
	h.startRun(0)
	h.advance(time.Second)
	urgent := q.urgent.sent()
	if len(urgent) != 1 || taskOf(t, urgent[0], "src").State != protocol.Failed {
		t.Fatalf("urgent queue got %v; want the start failure", urgent)
	}
}

func TestUrgentQueueURLFromEnv(t *testing.T) {
	env := func(vars map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	}
	vars := testIdentity().Env()
	id, err := IdentityFromEnv(env(vars))
	if err != nil || id.UrgentQueueURL != "" {
		t.Fatalf("without %s: %+v, %v; want no urgent queue", EnvUrgentQueueURL, id, err)
	}
	vars[EnvUrgentQueueURL] = " http://127.0.0.1:1/queue/urgent "
	id, err = IdentityFromEnv(env(vars))
	if err != nil || id.UrgentQueueURL != "http://127.0.0.1:1/queue/urgent" {
		t.Fatalf("with %s: %q, %v", EnvUrgentQueueURL, id.UrgentQueueURL, err)
	}
	if got := id.Env()[EnvUrgentQueueURL]; got != id.UrgentQueueURL {
		t.Errorf("Env()[%s] = %q", EnvUrgentQueueURL, got)
	}
	for value, want := range map[string]string{
		"urgent":          EnvUrgentQueueURL + ` is "urgent": set it to the urgent worker queue's URL`,
		vars[EnvQueueURL]: EnvUrgentQueueURL + " is the worker queue's URL",
	} {
		vars[EnvUrgentQueueURL] = value
		if _, err := IdentityFromEnv(env(vars)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=%q: error %v; want it to say %q", EnvUrgentQueueURL, value, err, want)
		}
	}
}

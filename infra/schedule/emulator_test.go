package schedule_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/functions/jobs"
	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/resources/resourcestest"
	"github.com/weirstream/weir/infra/schedule"
)

type env struct {
	sc        *scheduler.Client
	schedules *schedule.Schedules
	store     *dynamo.Store
	svc       *jobs.Service
	group     string
}

// setup creates the template's data resources, the schedule group
// included, on the emulator.
func setup(t *testing.T) *env {
	t.Helper()
	cfg := awstest.Config(t)
	path, err := resourcestest.TemplatePath()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := resources.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	clients := resources.Clients{DynamoDB: dynamodb.NewFromConfig(cfg), SQS: sqs.NewFromConfig(cfg), Scheduler: scheduler.NewFromConfig(cfg)}
	stack, err := tmpl.CreateWith(t.Context(), clients, resources.Options{StackName: awstest.Name(t, "ttl")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := stack.DeleteWith(ctx, clients); err != nil {
			t.Errorf("delete stack: %v", err)
		}
	})
	vars := stack.Env()
	e := &env{sc: clients.Scheduler, group: vars[resources.EnvScheduleGroup]}
	e.schedules, err = schedule.New(e.sc, schedule.Settings{
		Group:         e.group,
		FunctionARN:   "arn:aws:lambda:us-east-1:123456789012:function:" + stack.Name + "-ttl",
		RoleARN:       "arn:aws:iam::123456789012:role/" + stack.Name + "-scheduler",
		DeadLetterARN: vars[resources.EnvScheduleDLQARN],
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.store, err = dynamo.NewStore(dynamo.NewClient(cfg), vars[resources.EnvJobsTable]); err != nil {
		t.Fatal(err)
	}
	if e.svc, err = jobs.New(jobs.Deps{Store: e.store, Timers: e.schedules}); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestSchedulesAreCreatedMovedAndCleared(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	at := time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)
	if err := e.schedules.Set(ctx, "job-1", at); err != nil {
		t.Fatal(err)
	}
	got, found, err := e.schedules.Get(ctx, "job-1")
	if err != nil || !found {
		t.Fatalf("Get = %+v, %v, %v", got, found, err)
	}
	if got.Expression != "at(2030-01-02T03:04:06)" || got.Input != `{"job_id":"job-1"}` {
		t.Errorf("schedule = %+v, want at() rounded up to the second and the job id as input", got)
	}
	out, err := e.sc.GetSchedule(ctx, &scheduler.GetScheduleInput{Name: aws.String(schedule.Name("job-1")), GroupName: aws.String(e.group)})
	if err != nil {
		t.Fatal(err)
	}
	if out.ActionAfterCompletion != "DELETE" || out.Target.DeadLetterConfig == nil || out.Target.RetryPolicy == nil ||
		aws.ToString(out.ScheduleExpressionTimezone) != "UTC" || out.FlexibleTimeWindow.Mode != "OFF" {
		t.Errorf("schedule settings = %+v, target %+v", out, out.Target)
	}
	if err := e.schedules.Set(ctx, "job-1", at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := e.schedules.Get(ctx, "job-1"); got.Expression != "at(2030-01-02T04:04:06)" {
		t.Errorf("moved schedule = %s", got.Expression)
	}
	for range 2 {
		if err := e.schedules.Clear(ctx, "job-1"); err != nil {
			t.Fatalf("Clear: %v", err)
		}
	}
	if _, found, _ := e.schedules.Get(ctx, "job-1"); found {
		t.Error("schedule still there after Clear")
	}
	long := job.ID(strings.Repeat("a", 128))
	if err := e.schedules.Set(ctx, long, at); err != nil {
		t.Errorf("a 128-character job id: %v", err)
	}
	if n := schedule.Name(long); len(n) > 64 || n == schedule.Name(long[:127]+"b") {
		t.Errorf("Name(long) = %q: too long or not unique", n)
	}
}

func config(id job.ID, ttl time.Duration) job.Config {
	return job.Config{JobID: id, TTL: ttl, Spec: job.Spec{
		Operators: []job.Operator{{ID: "src", Parallelism: 1, Source: true}}, SlotsPerWorker: 1, Program: "p",
	}}
}

// The TTL handler's three outcomes, with the config and status on the
// emulator's DynamoDB and the schedule on its Scheduler API.
func TestTheTTLHandlerOnTheEmulator(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	now := time.Now().UTC()
	for _, c := range []struct {
		id      job.ID
		started time.Time
	}{{"past-due", now.Add(-2 * time.Hour)}, {"started-late", now.Add(-10 * time.Minute)}} {
		if _, err := e.svc.Create(ctx, config(c.id, time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.PutStatus(ctx, 1, job.Status{JobID: c.id, State: job.Running, StartedAt: c.started}); err != nil {
			t.Fatal(err)
		}
	}

	out, err := e.svc.Expire(ctx, jobs.ExpiryEvent{JobID: "past-due"})
	if err != nil || out != jobs.Stopped {
		t.Fatalf("past due: %s, %v", out, err)
	}
	cfg, err := e.store.GetConfig(ctx, "past-due")
	if err != nil || cfg.Stop != job.StopImmediate || !strings.HasPrefix(cfg.StopReason, "ttl: ") {
		t.Errorf("past-due config: %+v, %v", cfg, err)
	}

	out, err = e.svc.Expire(ctx, jobs.ExpiryEvent{JobID: "started-late"})
	if err != nil || out != jobs.Moved {
		t.Fatalf("started late: %s, %v", out, err)
	}
	got, found, err := e.schedules.Get(ctx, "started-late")
	if want := schedule.Expression(now.Add(50 * time.Minute)); err != nil || !found || got.Expression != want {
		t.Errorf("moved schedule = %+v (%v, %v), want %s", got, found, err, want)
	}

	for _, id := range []job.ID{"missing", "past-due"} {
		if out, err := e.svc.Expire(ctx, jobs.ExpiryEvent{JobID: id}); err != nil || out != jobs.Ignored {
			t.Errorf("%s: %s, %v; want ignored", id, out, err)
		}
	}
}

// The local stand-in fires what is due, deletes it unless the target moved
// it, and leaves the rest.
func TestTheStandinFiresDueSchedules(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	now := time.Now().UTC()
	for id, at := range map[job.ID]time.Time{"due": now.Add(-time.Minute), "moves": now.Add(-time.Second), "later": now.Add(time.Hour)} {
		if err := e.schedules.Set(ctx, id, at); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var inputs []string
	standin, err := schedule.NewStandin(e.sc, e.group, func(ctx context.Context, input string) error {
		mu.Lock()
		inputs = append(inputs, input)
		mu.Unlock()
		if strings.Contains(input, "moves") {
			return e.schedules.Set(ctx, "moves", now.Add(2*time.Hour))
		}
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := standin.Tick(ctx, now)
	if err != nil || n != 2 {
		t.Fatalf("Tick = %d, %v; want 2 fired", n, err)
	}
	if _, found, _ := e.schedules.Get(ctx, "due"); found {
		t.Error("a fired schedule was not deleted")
	}
	if got, found, _ := e.schedules.Get(ctx, "moves"); !found || got.Expression != schedule.Expression(now.Add(2*time.Hour)) {
		t.Errorf("a schedule its target moved = %+v, %v; want kept at the new time", got, found)
	}
	if _, found, _ := e.schedules.Get(ctx, "later"); !found {
		t.Error("a schedule not due was deleted")
	}
	if n, err := standin.Tick(ctx, now); err != nil || n != 0 {
		t.Errorf("second Tick = %d, %v; want nothing fired", n, err)
	}
}

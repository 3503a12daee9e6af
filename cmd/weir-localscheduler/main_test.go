package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/resources/resourcestest"
	"github.com/weirstream/weir/infra/schedule"
)

// End to end on the emulator: a job past its TTL is stopped by the stand-in
// firing its schedule through the TTL handler, and the schedule is gone.
func TestTheStandinStopsAJobPastItsTTL(t *testing.T) {
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
	stack, err := tmpl.CreateWith(t.Context(), clients, resources.Options{StackName: awstest.Name(t, "ls")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = stack.DeleteWith(ctx, clients)
	})
	env := stack.Env()
	for k, v := range env {
		t.Setenv(k, v)
	}

	st, err := dynamo.NewStore(dynamo.NewClient(cfg), env[resources.EnvJobsTable])
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	started := time.Now().Add(-2 * time.Hour)
	if _, err := st.PutConfig(ctx, job.Config{JobID: "expired", TTL: time.Hour, Spec: job.Spec{
		Operators: []job.Operator{{ID: "src", Parallelism: 1, Source: true}}, SlotsPerWorker: 1, Program: "p",
	}}.WithDefaults()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutStatus(ctx, 1, job.Status{JobID: "expired", State: job.Running, StartedAt: started}); err != nil {
		t.Fatal(err)
	}
	timers, err := schedule.New(clients.Scheduler, schedule.Settings{
		Group: env[resources.EnvScheduleGroup], FunctionARN: "arn:aws:lambda:us-east-1:000000000000:function:f",
		RoleARN: "arn:aws:iam::000000000000:role/r", DeadLetterARN: env[resources.EnvScheduleDLQARN],
	})
	if err != nil {
		t.Fatal(err)
	}
	// As the API would have set it when the job was created.
	if err := timers.Set(ctx, "expired", started.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, 50*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := st.GetConfig(ctx, "expired")
		if err != nil {
			t.Fatal(err)
		}
		// The stand-in deletes the schedule just after the handler's write.
		_, scheduled, err := timers.Get(ctx, "expired")
		if err != nil {
			t.Fatal(err)
		}
		if got.Stop == job.StopImmediate && !scheduled {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 20 s: stop %q (want immediate), schedule still there: %v", got.Stop, scheduled)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Package wiring builds what the functions (and their local stand-ins)
// run on from their settings: the AWS config is loaded once here and
// handed to the adapters.
package wiring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"

	"github.com/weirstream/weir/functions/jobs"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/schedule"
)

// Env is the settings the functions read, from the stack's outputs.
type Env struct {
	JobsTable        string // WEIR_JOBS_TABLE
	ScheduleGroup    string // WEIR_SCHEDULE_GROUP
	TTLFunctionARN   string // WEIR_TTL_FUNCTION_ARN
	SchedulerRoleARN string // WEIR_SCHEDULER_ROLE_ARN
	ScheduleDLQARN   string // WEIR_SCHEDULE_DLQ_ARN
}

// EnvFrom reads the settings from the environment (os.Getenv, or a stand-in
// in tests).
func EnvFrom(getenv func(string) string) Env {
	return Env{
		JobsTable:        getenv("WEIR_JOBS_TABLE"),
		ScheduleGroup:    getenv("WEIR_SCHEDULE_GROUP"),
		TTLFunctionARN:   getenv("WEIR_TTL_FUNCTION_ARN"),
		SchedulerRoleARN: getenv("WEIR_SCHEDULER_ROLE_ARN"),
		ScheduleDLQARN:   getenv("WEIR_SCHEDULE_DLQ_ARN"),
	}
}

// LocalEnv is EnvFrom for the local stack: nothing there invokes the
// schedules' target (weir-localscheduler calls the TTL handler itself), so
// the target and role, when unset, are placeholders that only fill the
// schedules the way the stack's outputs do on AWS.
func LocalEnv(getenv func(string) string) Env {
	env := EnvFrom(getenv)
	if env.TTLFunctionARN == "" {
		env.TTLFunctionARN = "arn:aws:lambda:us-east-1:000000000000:function:weir-local-ttl"
	}
	if env.SchedulerRoleARN == "" {
		env.SchedulerRoleARN = "arn:aws:iam::000000000000:role/weir-local-scheduler"
	}
	return env
}

// Service builds the jobs service on DynamoDB and EventBridge Scheduler.
// Every missing setting is named in one error, before any AWS call.
func Service(ctx context.Context, env Env, log *slog.Logger) (*jobs.Service, *scheduler.Client, error) {
	var errs []error
	if env.JobsTable == "" {
		errs = append(errs, errors.New("WEIR_JOBS_TABLE is empty: set it to the stack's JobsTableName output"))
	}
	settings := schedule.Settings{
		Group: env.ScheduleGroup, FunctionARN: env.TTLFunctionARN,
		RoleARN: env.SchedulerRoleARN, DeadLetterARN: env.ScheduleDLQARN,
	}
	if err := settings.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, fmt.Errorf("settings: %w", err)
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("load AWS config: %w", err)
	}
	st, err := dynamo.NewStore(dynamo.NewClient(cfg), env.JobsTable)
	if err != nil {
		return nil, nil, err
	}
	sc := scheduler.NewFromConfig(cfg)
	timers, err := schedule.New(sc, settings)
	if err != nil {
		return nil, nil, err
	}
	svc, err := jobs.New(jobs.Deps{Store: st, Timers: timers, Log: log})
	if err != nil {
		return nil, nil, err
	}
	return svc, sc, nil
}

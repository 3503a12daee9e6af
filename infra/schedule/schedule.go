// Package schedule keeps each job's TTL timer as a one-time EventBridge
// Scheduler schedule in weir's own schedule group: `at(...)` in UTC,
// deleted by Scheduler after it fires, retried, with a dead-letter queue.
// Its input is {"job_id": "<id>"}, which the TTL function receives as is.
package schedule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"
	"github.com/aws/aws-sdk-go-v2/service/scheduler/types"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/functions/jobs"
)

// Settings name the group and what every schedule targets.
type Settings struct {
	// Group is the schedule group (WEIR_SCHEDULE_GROUP).
	Group string
	// FunctionARN is the TTL function (WEIR_TTL_FUNCTION_ARN).
	FunctionARN string
	// RoleARN is the role Scheduler assumes to invoke it
	// (WEIR_SCHEDULER_ROLE_ARN).
	RoleARN string
	// DeadLetterARN is the queue of firings that could not be delivered
	// (WEIR_SCHEDULE_DLQ_ARN).
	DeadLetterARN string
	// MaxRetries and MaxEventAge bound Scheduler's retries of a firing;
	// defaults 10 and 1 h.
	MaxRetries  int32
	MaxEventAge time.Duration
}

// Validate says which settings are missing or out of range.
func (s Settings) Validate() error {
	var errs []error
	for _, f := range []struct{ v, env string }{
		{s.Group, "WEIR_SCHEDULE_GROUP"}, {s.FunctionARN, "WEIR_TTL_FUNCTION_ARN"},
		{s.RoleARN, "WEIR_SCHEDULER_ROLE_ARN"}, {s.DeadLetterARN, "WEIR_SCHEDULE_DLQ_ARN"},
	} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%s is empty: set it from the stack output of the same name", f.env))
		}
	}
	if s.MaxRetries < 0 || s.MaxRetries > 185 {
		errs = append(errs, fmt.Errorf("schedule MaxRetries %d is out of range: use 0 to 185", s.MaxRetries))
	}
	if s.MaxEventAge != 0 && (s.MaxEventAge < time.Minute || s.MaxEventAge > 24*time.Hour) {
		errs = append(errs, fmt.Errorf("schedule MaxEventAge %s is out of range: use 1m to 24h", s.MaxEventAge))
	}
	return errors.Join(errs...)
}

// Schedules is jobs.Timers on EventBridge Scheduler.
type Schedules struct {
	c *scheduler.Client
	s Settings
}

var _ jobs.Timers = (*Schedules)(nil)

// New checks the settings and returns the adapter.
func New(c *scheduler.Client, s Settings) (*Schedules, error) {
	if c == nil {
		return nil, errors.New("schedule: the Scheduler client is nil")
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("schedule: %w", err)
	}
	if s.MaxRetries == 0 {
		s.MaxRetries = 10
	}
	if s.MaxEventAge == 0 {
		s.MaxEventAge = time.Hour
	}
	return &Schedules{c: c, s: s}, nil
}

// Name is the job's schedule name: names allow 64 characters of
// [0-9a-zA-Z-_.], job ids 128, so long ids are cut and made unique with a
// hash. The job id itself travels in the input.
func Name(id job.ID) string {
	const prefix = "ttl-"
	if len(prefix)+len(id) <= 64 {
		return prefix + string(id)
	}
	sum := sha256.Sum256([]byte(id))
	return prefix + string(id[:40]) + "-" + hex.EncodeToString(sum[:])[:19]
}

const atLayout = "2006-01-02T15:04:05"

// Expression is the at() expression for t, in UTC, rounded up to the
// second so the timer never fires early.
func Expression(t time.Time) string {
	t = t.UTC()
	if t.Truncate(time.Second) != t {
		t = t.Truncate(time.Second).Add(time.Second)
	}
	return "at(" + t.Format(atLayout) + ")"
}

// ParseExpression reads the time of an at() expression in UTC.
func ParseExpression(expr string) (time.Time, error) {
	inner, ok := strings.CutPrefix(expr, "at(")
	inner, ok2 := strings.CutSuffix(inner, ")")
	if !ok || !ok2 {
		return time.Time{}, fmt.Errorf("schedule expression %q is not at(...)", expr)
	}
	return time.Parse(atLayout, inner)
}

// Set creates the job's schedule, or moves it to at.
func (s *Schedules) Set(ctx context.Context, id job.ID, at time.Time) error {
	input, err := json.Marshal(jobs.ExpiryEvent{JobID: id})
	if err != nil {
		return err
	}
	name := aws.String(Name(id))
	target := &types.Target{
		Arn:              aws.String(s.s.FunctionARN),
		RoleArn:          aws.String(s.s.RoleARN),
		Input:            aws.String(string(input)),
		DeadLetterConfig: &types.DeadLetterConfig{Arn: aws.String(s.s.DeadLetterARN)},
		RetryPolicy: &types.RetryPolicy{
			MaximumRetryAttempts:     aws.Int32(s.s.MaxRetries),
			MaximumEventAgeInSeconds: aws.Int32(int32(s.s.MaxEventAge / time.Second)),
		},
	}
	expr := aws.String(Expression(at))
	window := &types.FlexibleTimeWindow{Mode: types.FlexibleTimeWindowModeOff}
	_, err = s.c.UpdateSchedule(ctx, &scheduler.UpdateScheduleInput{
		Name: name, GroupName: aws.String(s.s.Group), ScheduleExpression: expr,
		ScheduleExpressionTimezone: aws.String("UTC"), FlexibleTimeWindow: window,
		ActionAfterCompletion: types.ActionAfterCompletionDelete, Target: target,
	})
	if _, missing := errors.AsType[*types.ResourceNotFoundException](err); !missing {
		if err != nil {
			return fmt.Errorf("move TTL schedule of job %s: %w", id, err)
		}
		return nil
	}
	_, err = s.c.CreateSchedule(ctx, &scheduler.CreateScheduleInput{
		Name: name, GroupName: aws.String(s.s.Group), ScheduleExpression: expr,
		ScheduleExpressionTimezone: aws.String("UTC"), FlexibleTimeWindow: window,
		ActionAfterCompletion: types.ActionAfterCompletionDelete, Target: target,
		Description: aws.String("weir TTL of job " + string(id)),
	})
	if err != nil {
		return fmt.Errorf("create TTL schedule of job %s: %w", id, err)
	}
	return nil
}

// Clear deletes the job's schedule; none is not an error.
func (s *Schedules) Clear(ctx context.Context, id job.ID) error {
	_, err := s.c.DeleteSchedule(ctx, &scheduler.DeleteScheduleInput{Name: aws.String(Name(id)), GroupName: aws.String(s.s.Group)})
	if _, missing := errors.AsType[*types.ResourceNotFoundException](err); missing {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete TTL schedule of job %s: %w", id, err)
	}
	return nil
}

// Timer is one stored schedule, as the local stand-in and tests read it.
type Timer struct {
	Name       string
	Expression string
	At         time.Time
	Input      string
}

// Get reads the job's schedule; found is false when there is none.
func (s *Schedules) Get(ctx context.Context, id job.ID) (t Timer, found bool, err error) {
	return get(ctx, s.c, s.s.Group, Name(id))
}

func get(ctx context.Context, c *scheduler.Client, group, name string) (Timer, bool, error) {
	out, err := c.GetSchedule(ctx, &scheduler.GetScheduleInput{Name: aws.String(name), GroupName: aws.String(group)})
	if _, missing := errors.AsType[*types.ResourceNotFoundException](err); missing {
		return Timer{}, false, nil
	}
	if err != nil {
		return Timer{}, false, fmt.Errorf("read schedule %s: %w", name, err)
	}
	t := Timer{Name: name, Expression: aws.ToString(out.ScheduleExpression)}
	if out.Target != nil {
		t.Input = aws.ToString(out.Target.Input)
	}
	at, err := ParseExpression(t.Expression)
	if err != nil {
		return Timer{}, false, err
	}
	t.At = at
	return t, true, nil
}

package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"
)

// Standin is the local stand-in for EventBridge Scheduler. The emulator
// stores schedules but never fires them, so on the local stack this polls
// the schedule group, calls the target in-process when a schedule is due,
// and then deletes the schedule as ActionAfterCompletion: DELETE does,
// unless the target moved it. A failed call is retried on the next tick.
type Standin struct {
	c     *scheduler.Client
	group string
	fire  func(ctx context.Context, input string) error
	log   *slog.Logger
}

// NewStandin returns a stand-in that hands each due schedule's input to
// fire (the TTL function's handler).
func NewStandin(c *scheduler.Client, group string, fire func(ctx context.Context, input string) error, log *slog.Logger) (*Standin, error) {
	if c == nil || fire == nil {
		return nil, errors.New("schedule stand-in: the Scheduler client and the target are required")
	}
	if group == "" {
		return nil, errors.New("schedule stand-in: WEIR_SCHEDULE_GROUP is empty: set it to the group weir-resources created")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Standin{c: c, group: group, fire: fire, log: log}, nil
}

// Tick fires every schedule of the group due at now and says how many it
// fired.
func (s *Standin) Tick(ctx context.Context, now time.Time) (int, error) {
	p := scheduler.NewListSchedulesPaginator(s.c, &scheduler.ListSchedulesInput{GroupName: aws.String(s.group)})
	var names []string
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return 0, fmt.Errorf("list schedules of group %s: %w", s.group, err)
		}
		for _, sc := range page.Schedules {
			names = append(names, aws.ToString(sc.Name))
		}
	}
	fired := 0
	var errs []error
	for _, name := range names {
		t, found, err := get(ctx, s.c, s.group, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !found || t.At.After(now) {
			continue
		}
		fired++
		if err := s.fire(ctx, t.Input); err != nil {
			s.log.WarnContext(ctx, "local scheduler: target failed; retrying next tick", "schedule", name, "err", err)
			errs = append(errs, fmt.Errorf("schedule %s: %w", name, err))
			continue
		}
		if err := s.completed(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	return fired, errors.Join(errs...)
}

// completed deletes a fired schedule unless the target moved it.
func (s *Standin) completed(ctx context.Context, fired Timer) error {
	now, found, err := get(ctx, s.c, s.group, fired.Name)
	if err != nil || !found || now.Expression != fired.Expression {
		return err
	}
	_, err = s.c.DeleteSchedule(ctx, &scheduler.DeleteScheduleInput{Name: aws.String(fired.Name), GroupName: aws.String(s.group)})
	if err != nil {
		return fmt.Errorf("delete fired schedule %s: %w", fired.Name, err)
	}
	return nil
}

// Run ticks every interval until ctx ends. Tick errors are logged: a
// stand-in that stopped on the first emulator hiccup would lose timers.
func (s *Standin) Run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := s.Tick(ctx, time.Now()); err != nil {
			s.log.WarnContext(ctx, "local scheduler: tick failed", "err", err)
		} else if n > 0 {
			s.log.InfoContext(ctx, "local scheduler: fired schedules", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

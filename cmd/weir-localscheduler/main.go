// Command weir-localscheduler is the local stand-in for EventBridge
// Scheduler. The emulator stores the TTL schedules the config API creates
// but never fires them; this polls the schedule group and, when a schedule
// is due, calls the same TTL handler the TTL Lambda function runs,
// in-process, then deletes the schedule as Scheduler would. It is for the
// local stack only: on AWS, Scheduler fires the TTL function itself.
//
//	eval "$(weir-resources create --stack weir-local)"
//	weir-localscheduler
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/weirstream/weir/functions/jobs"
	"github.com/weirstream/weir/functions/wiring"
	"github.com/weirstream/weir/infra/schedule"
)

func main() {
	every := flag.Duration("every", time.Second, "how often to look for due schedules")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *every, log); err != nil {
		log.Error("local scheduler stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, every time.Duration, log *slog.Logger) error {
	if every <= 0 {
		return fmt.Errorf("-every %s: must be positive", every)
	}
	env := wiring.LocalEnv(os.Getenv)
	svc, sc, err := wiring.Service(ctx, env, log)
	if err != nil {
		return err
	}
	standin, err := schedule.NewStandin(sc, env.ScheduleGroup, func(ctx context.Context, input string) error {
		var ev jobs.ExpiryEvent
		if err := json.Unmarshal([]byte(input), &ev); err != nil {
			// Retrying cannot help; on AWS the firing would end in the
			// schedule dead-letter queue.
			log.Error("local scheduler: schedule input is not a TTL event; dropped", "input", input, "err", err)
			return nil
		}
		_, err := svc.Expire(ctx, ev)
		return err
	}, log)
	if err != nil {
		return err
	}
	log.Info("local scheduler: standing in for EventBridge Scheduler", "group", env.ScheduleGroup, "every", every)
	return standin.Run(ctx, every)
}

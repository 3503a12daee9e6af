// Command simworker is a simulated weir worker, built on the worker SDK:
// what the local demo, the end-to-end tests and the benchmarks run. Its
// flags script how it misbehaves (simworker -h lists them).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program; it returns the exit status: 0 when the run
// ended (stopped, superseded or signalled), 1 on a failure, 2 on bad
// flags or environment.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stderr io.Writer) int {
	s, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: s.logLevel}))
	id, err := worker.IdentityFromEnv(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "simworker: %v\n", err)
		return 2
	}
	log = log.With("job", string(id.JobID), "run_id", id.RunID, "worker", id.WorkerID)
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Error("cannot load the AWS configuration: check the AWS_* variables", "err", err)
		return 1
	}
	pub, cmds, err := worker.Connect(awsCfg, id, log)
	if err != nil {
		log.Error("cannot connect", "err", err)
		return 2
	}
	m := newSim(s, clock.Real{}, log, os.Exit)
	w, err := worker.New(id, m, publisher{next: pub, sim: m}, cmds,
		worker.Options{CommittingOperators: s.committing, Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "simworker: %v\n", err)
		return 2
	}
	switch err := w.Run(ctx); {
	case err == nil, errors.Is(err, worker.ErrSuperseded), ctx.Err() != nil:
		log.Info("simworker done", "reason", fmt.Sprint(err))
		return 0
	default:
		log.Error("simworker failed", "err", err)
		return 1
	}
}

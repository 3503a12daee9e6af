// Command ttl is the TTL function, fired by a job's EventBridge schedule
// with {"job_id": "<id>"}: it stops the job if its TTL ran out, or moves
// the schedule to the true deadline (see docs/state-machine.md).
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/weirstream/weir/functions/jobs"
	"github.com/weirstream/weir/functions/wiring"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	svc, _, err := wiring.Service(context.Background(), wiring.EnvFrom(os.Getenv), log)
	if err != nil {
		log.Error("TTL function cannot start", "err", err)
		os.Exit(1)
	}
	lambda.Start(func(ctx context.Context, ev jobs.ExpiryEvent) (jobs.Outcome, error) {
		return svc.Expire(ctx, ev)
	})
}

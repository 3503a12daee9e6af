package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/worker"
)

// counter is a worker program whose subtasks count: the smallest complete
// program, the one docs/worker.md walks through.
type counter struct {
	mu     sync.Mutex
	r      *worker.Reporter
	counts map[worker.Subtask]uint64
	stop   context.CancelFunc
	done   chan struct{}
}

func (c *counter) Start(_ context.Context, req worker.StartRequest, r *worker.Reporter) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.r, c.counts = r, map[worker.Subtask]uint64{}
	for _, s := range req.Subtasks {
		c.counts[s] = 0 // a real program restores from req.RestoreEpoch here
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop, c.done = cancel, make(chan struct{})
	go c.work(ctx)
	return nil
}

// work is the program's own goroutine; Stop ends it.
func (c *counter) work(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		for s := range c.counts {
			c.counts[s] += 100
			_ = c.r.SetMetrics(s, worker.Metrics{RecordsIn: c.counts[s], RecordsOut: c.counts[s]})
		}
		c.mu.Unlock()
	}
}

func (c *counter) Checkpoint(_ context.Context, req worker.CheckpointRequest) ([]worker.Snapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []worker.Snapshot
	for s, n := range c.counts {
		// A real program writes its state to S3 and reports where it is.
		out = append(out, worker.Snapshot{Subtask: s, Bytes: 8, Metadata: fmt.Sprintf("count=%d", n)})
	}
	return out, nil
}

func (c *counter) Commit(context.Context, int64) error { return nil } // no committing sinks

func (c *counter) Stop(ctx context.Context, _ job.StopMode) error {
	c.mu.Lock()
	stop, done := c.stop, c.done
	c.mu.Unlock()
	if stop == nil {
		return nil
	}
	stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Example is the main function of a worker: read the identity its launcher
// set, connect, and run until the run is over.
func Example() {
	if _, set := os.LookupEnv(worker.EnvJobID); !set {
		return // not started by a launcher: nothing to do in this example
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))

	id, err := worker.IdentityFromEnv(os.LookupEnv)
	if err != nil {
		log.Error("bad environment", "err", err) // names every variable to fix
		os.Exit(2)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Error("no AWS configuration", "err", err)
		os.Exit(1)
	}
	pub, cmds, err := worker.Connect(awsCfg, id, log)
	if err != nil {
		log.Error("cannot connect", "err", err)
		os.Exit(2)
	}
	w, err := worker.New(id, &counter{}, pub, cmds, worker.Options{Logger: log})
	if err != nil {
		log.Error("bad options", "err", err)
		os.Exit(2)
	}
	switch err := w.Run(ctx); {
	case err == nil, errors.Is(err, worker.ErrSuperseded), ctx.Err() != nil:
		// Stopped, superseded by a newer run, or told to exit.
	default:
		log.Error("worker failed", "err", err)
		os.Exit(1)
	}
}

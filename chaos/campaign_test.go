package chaos_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/weirstream/weir/chaos"
	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/resources/resourcestest"
	"github.com/weirstream/weir/internal/proctest"
)

// TestShortCampaign is the campaign CI runs: three controllers, four jobs,
// at least 200 injected faults, and not one violation. make test runs it
// on its own after the other packages, so the emulator, which answers one
// DynamoDB request at a time, serves the campaign alone.
func TestShortCampaign(t *testing.T) {
	shortCampaign(t, nil)
}

// TestShortProcessCampaign is the same with weir-controller processes:
// SIGKILL, SIGSTOP past the lease then SIGCONT, SIGTERM, and the AWS
// faults injected inside each process (--test-faults).
func TestShortProcessCampaign(t *testing.T) {
	if os.Getenv("WEIR_CHAOS") != "1" {
		t.Skip("the short fault campaigns run with WEIR_CHAOS=1 (make test runs them after the other tests; make chaos-short alone)")
	}
	bins, err := proctest.Build(t.TempDir(), "github.com/weirstream/weir/cmd/weir-controller")
	if err != nil {
		t.Fatal(err)
	}
	var out io.Writer
	if path := os.Getenv("WEIR_CHAOS_LOG"); path != "" {
		f, err := os.Create(path + ".processes")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		out = f
	}
	shortCampaign(t, &chaos.ProcessOptions{Binary: bins[0], Output: out})
}

func shortCampaign(t *testing.T, processes *chaos.ProcessOptions) {
	if os.Getenv("WEIR_CHAOS") != "1" {
		t.Skip("the short fault campaigns run with WEIR_CHAOS=1 (make test runs them after the other tests; make chaos-short alone)")
	}
	cfg := awstest.Config(t)
	stack := resourcestest.ForTest(t, cfg)
	env := stack.Env()
	seed := uint64(1)
	if s := os.Getenv("WEIR_CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("WEIR_CHAOS_SEED=%q is not a number", s)
		}
		seed = n
	}
	// WEIR_CHAOS_LOG names a file for the controllers' logs.
	var log *slog.Logger
	if path := os.Getenv("WEIR_CHAOS_LOG"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		log = slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	// WEIR_CHAOS_TRACE names a file for every DynamoDB write the
	// controllers send.
	var trace io.Writer
	if path := os.Getenv("WEIR_CHAOS_TRACE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		trace = f
	}
	// WEIR_CHAOS_PROGRESS=1 logs every event as it happens.
	progress := func(string) {}
	if os.Getenv("WEIR_CHAOS_PROGRESS") == "1" {
		progress = func(s string) { t.Log(s) }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep, err := chaos.Run(ctx, chaos.Env{
		AWS: cfg, JobsTable: env[resources.EnvJobsTable], LeaseTable: env[resources.EnvLeaseTable],
		QueueURL: env[resources.EnvWorkerQueueURL], DLQURL: env[resources.EnvWorkerDLQURL],
	}, chaos.Options{Seed: seed, Duration: 45 * time.Second, Settle: 40 * time.Second, Jobs: 4, Controllers: 3, FaultRate: 2.5, MinFaults: 250, Log: log, Trace: trace,
		Progress: progress, Processes: processes})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(chaos.Summary(rep))
	for _, v := range rep.ViolationDetails {
		t.Error(v)
	}
	if rep.FaultsInjected < 200 {
		t.Errorf("%d faults injected; the short campaign must inject at least 200", rep.FaultsInjected)
	}
	if t.Failed() {
		out, _ := json.MarshalIndent(rep, "", "  ")
		t.Logf("report:\n%s", out)
	}
}

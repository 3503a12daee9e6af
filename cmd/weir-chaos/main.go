// Command weir-chaos runs fault campaigns against weir's controller on the
// endpoint the AWS SDK is pointed at (the local emulator: make chaos), one
// per seed, each on its own copy of the template's tables and queues, and
// writes a report:
//
//	weir-chaos -seeds 1,2,3 -duration 3m -jobs 6 -report chaos/report.json
//
// It exits 1 when any campaign found a violation, 2 when one could not run.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/weirstream/weir/chaos"
	"github.com/weirstream/weir/chaos/checker"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/internal/proctest"
)

// summary is the report file: the campaigns' totals first, then each.
type summary struct {
	Seeds            []uint64            `json:"seeds"`
	FaultsInjected   int                 `json:"faults_injected"`
	FaultsByKind     map[string]int      `json:"faults_by_kind"`
	Jobs             int                 `json:"jobs"`
	Transitions      int                 `json:"transitions"`
	Recoveries       int                 `json:"recoveries"`
	Violations       int                 `json:"violations"`
	ViolationDetails []checker.Violation `json:"violation_details"`
	Campaigns        []*chaos.Report     `json:"campaigns"`
}

func main() {
	os.Exit(run())
}

func run() int {
	var (
		seeds    = flag.String("seeds", "1", "comma-separated seeds; one campaign each")
		duration = flag.Duration("duration", 2*time.Minute, "faulty phase of each campaign")
		settle   = flag.Duration("settle", 45*time.Second, "bound for jobs to reach the state their configs ask for once faults stop")
		jobs     = flag.Int("jobs", 4, "jobs per campaign")
		ctrls    = flag.Int("controllers", 3, "controllers contending for the lease")
		rate     = flag.Float64("fault-rate", 1.5, "scale of injected AWS faults (1: about one request in ten)")
		every    = flag.Duration("event-every", 1500*time.Millisecond, "mean time between process and operator events")
		least    = flag.Int("min-faults", 350, "each campaign's faulty phase goes on (up to twice -duration) until this many faults were injected: a slow endpoint gets fewer requests, so fewer faults")
		report   = flag.String("report", "chaos/report.json", "where to write the JSON report")
		template = flag.String("template", "template.yaml", "the SAM template whose tables and queues each campaign gets")
		logPath  = flag.String("log", "chaos/controllers.log", "the controllers' logs (warnings and errors; with -processes, each process's whole log)")
		verbose  = flag.Bool("v", false, "print every event")
		trace    = flag.String("trace", "", "a file for every DynamoDB write the controllers send (for tracing a violation to its request)")
		procs    = flag.Bool("processes", false, "run the controllers as weir-controller processes: SIGKILL, SIGSTOP/SIGCONT and SIGTERM, faults injected through --test-faults")
		bin      = flag.String("controller-bin", "", "the weir-controller binary for -processes (default: built from ./cmd/weir-controller into a temporary directory)")
	)
	flag.Parse()
	list, err := parseSeeds(*seeds)
	if err != nil {
		fmt.Fprintln(os.Stderr, "weir-chaos:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "weir-chaos: load AWS config:", err)
		return 2
	}
	tmpl, err := resources.Load(*template)
	if err != nil {
		fmt.Fprintf(os.Stderr, "weir-chaos: %v (run from the repository root, or pass -template)\n", err)
		return 2
	}
	if err := os.MkdirAll(filepath.Dir(*logPath), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "weir-chaos:", err)
		return 2
	}
	logFile, err := os.Create(*logPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "weir-chaos:", err)
		return 2
	}
	defer logFile.Close()

	var traceFile *os.File
	if *trace != "" {
		if traceFile, err = os.Create(*trace); err != nil {
			fmt.Fprintln(os.Stderr, "weir-chaos:", err)
			return 2
		}
		defer traceFile.Close()
	}

	var processes *chaos.ProcessOptions
	if *procs {
		if *bin == "" {
			dir, err := os.MkdirTemp("", "weir-chaos-bin-")
			if err != nil {
				fmt.Fprintln(os.Stderr, "weir-chaos:", err)
				return 2
			}
			defer os.RemoveAll(dir)
			built, err := proctest.Build(dir, "github.com/weirstream/weir/cmd/weir-controller")
			if err != nil {
				fmt.Fprintf(os.Stderr, "weir-chaos: %v (or pass -controller-bin)\n", err)
				return 2
			}
			*bin = built[0]
		}
		processes = &chaos.ProcessOptions{Binary: *bin, Output: logFile}
	} else if *bin != "" {
		fmt.Fprintln(os.Stderr, "weir-chaos: -controller-bin is set without -processes: add -processes, or drop it")
		return 2
	}

	sum := summary{Seeds: list, FaultsByKind: map[string]int{}, ViolationDetails: []checker.Violation{}}
	for _, seed := range list {
		progress := func(string) {}
		if *verbose {
			progress = func(s string) { fmt.Printf("  [seed %d] %s\n", seed, s) }
		}
		kind := "controllers"
		if *procs {
			kind = "controller processes"
		}
		fmt.Printf("weir-chaos: seed %d: %s of faults, %d jobs, %d %s\n", seed, *duration, *jobs, *ctrls, kind)
		rep, err := campaign(ctx, cfg, tmpl, seed, chaos.Options{
			Seed: seed, Duration: *duration, Settle: *settle, Jobs: *jobs, Controllers: *ctrls, MinFaults: *least,
			FaultRate: *rate, EventEvery: *every, Progress: progress, Trace: traceWriter(traceFile), Processes: processes,
			Log: slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelWarn})).With("seed", seed),
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "weir-chaos: seed %d: %v\n", seed, err)
			return 2
		}
		printReport(rep)
		sum.Campaigns = append(sum.Campaigns, rep)
		sum.FaultsInjected += rep.FaultsInjected
		for k, v := range rep.FaultsByKind {
			sum.FaultsByKind[k] += v
		}
		sum.Jobs += rep.Jobs
		sum.Transitions += rep.Transitions
		sum.Recoveries += rep.Recoveries
		sum.Violations += rep.Violations
		sum.ViolationDetails = append(sum.ViolationDetails, rep.ViolationDetails...)
	}
	if err := writeReport(*report, &sum); err != nil {
		fmt.Fprintln(os.Stderr, "weir-chaos:", err)
		return 2
	}
	fmt.Printf("weir-chaos: %d campaigns, %d faults injected, %d violations; report in %s\n", len(list), sum.FaultsInjected, sum.Violations, *report)
	if sum.Violations > 0 {
		return 1
	}
	return 0
}

// campaign runs one seed on a fresh stack, deleted afterwards.
func campaign(ctx context.Context, cfg aws.Config, tmpl *resources.Template, seed uint64, o chaos.Options) (*chaos.Report, error) {
	ddb, sq := dynamodb.NewFromConfig(cfg), sqs.NewFromConfig(cfg)
	name := fmt.Sprintf("chaos-%d-%d", seed, time.Now().Unix()%100000)
	stack, err := tmpl.Create(ctx, ddb, sq, resources.Options{StackName: name})
	if err != nil {
		return nil, fmt.Errorf("create stack %s (is the emulator up? make emulator-up): %w", name, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := stack.Delete(dctx, ddb, sq); err != nil {
			fmt.Fprintf(os.Stderr, "weir-chaos: delete stack %s: %v\n", name, err)
		}
	}()
	env := stack.Env()
	return chaos.Run(ctx, chaos.Env{
		AWS: cfg, JobsTable: env[resources.EnvJobsTable], LeaseTable: env[resources.EnvLeaseTable],
		QueueURL: env[resources.EnvWorkerQueueURL], DLQURL: env[resources.EnvWorkerDLQURL],
	}, o)
}

// traceWriter is f as a writer, or nil (no trace) when f is nil.
func traceWriter(f *os.File) io.Writer {
	if f == nil {
		return nil
	}
	return f
}

func parseSeeds(s string) ([]uint64, error) {
	var out []uint64
	for part := range strings.SplitSeq(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(part), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("-seeds %q: %q is not a seed (a whole number)", s, part)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("-seeds: give at least one seed")
	}
	return out, nil
}

func printReport(r *chaos.Report) {
	fmt.Println("  " + chaos.Summary(r))
}

func writeReport(path string, s *summary) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// Command weir-bench measures the controller at scale and what it costs:
// CPU, heap, message throughput, tick lateness and failure reaction for
// 1,000 to 10,000 simulated 10-worker jobs on in-memory ports, the cost of
// decoding one envelope, the time a new leader takes to adopt every job,
// and the AWS requests (and dollars) a job and a controller cost a month.
// It prints a table and writes the figures as JSON.
//
//	go run ./cmd/weir-bench -out bench/report.json
//
// It stops by itself; -timeout bounds the whole run.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/weirstream/weir/infra/sqs"
)

// Report is what bench/report.json holds.
type Report struct {
	GeneratedAt    time.Time `json:"generated_at"`
	GoVersion      string    `json:"go_version"`
	CPUs           int       `json:"cpus"`
	StoreLatencyMs float64   `json:"store_latency_ms"`
	// StoreConcurrency bounds the store requests in flight (0: none).
	StoreConcurrency int          `json:"store_concurrency"`
	Calibration      []LoadResult `json:"calibration"`
	Load             []LoadResult `json:"load"`
	// DecodeNs is the median of several one-core runs; the range and the
	// time per envelope with every core decoding are beside it.
	DecodeNs         float64 `json:"decode_ns"`
	DecodeNsMin      float64 `json:"decode_ns_min"`
	DecodeNsMax      float64 `json:"decode_ns_max"`
	DecodeParallelNs float64 `json:"decode_parallel_ns"`
	DecodeAllocs     int64   `json:"decode_allocs"`
	DecodeBytes      int     `json:"decode_envelope_bytes"`
	TakeoverJobs     int     `json:"takeover_jobs"`
	TakeoverSeconds  float64 `json:"takeover_seconds"`
	// TakeoverRequestsPerJob is the DynamoDB requests the take-over made
	// per job, as the in-memory store models them.
	TakeoverRequestsPerJob float64     `json:"takeover_store_requests_per_job"`
	TakeoverCheckpoints    int         `json:"takeover_checkpoints_per_job"`
	TakeoverCPUSeconds     float64     `json:"takeover_cpu_seconds"`
	Cost                   *CostReport `json:"cost,omitempty"`
}

func main() {
	runtime.MemProfileRate = memProfileRate
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "weir-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("out", "bench/report.json", "where to write the JSON report (empty: nowhere)")
	jobsFlag := flag.String("jobs", "1000,5000,10000", "comma-separated job counts to load")
	window := flag.Duration("window", 20*time.Second, "measured time of each load run")
	warmup := flag.Duration("warmup", 6*time.Second, "time after take-over before measuring")
	latency := flag.Duration("store-latency", 5*time.Millisecond, "latency of every store request")
	concurrency := flag.Int("store-concurrency", 64, "store requests in flight at most, as one task's SDK client and CPU allow (0: no bound)")
	checkpoints := flag.Int("seed-checkpoints", 0, "ready checkpoints each job has when the controller takes it over")
	takeoverOnly := flag.Bool("takeover-only", false, "measure only the take-over of each job count (no load, decode or cost runs)")
	failRate := flag.Float64("fail-rate", 5, "injected task failures per second")
	readEvery := flag.Duration("read-every", 2*time.Second, "how often the simulator reads each job's command record")
	calibrate := flag.Bool("calibrate", true, "measure the simulator's own CPU with a plain consumer in place of the controller")
	timeout := flag.Duration("timeout", 15*time.Minute, "give up after this long")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run here")
	memProfile := flag.String("memprofile", "", "write a heap profile at the end of each controller run here (the job count is appended)")
	receiveLinger := flag.Duration("receive-linger", DefaultReceiveLinger, "the cost run's receive linger (the SQS inbox's Linger; 0: none)")
	ackLinger := flag.Duration("ack-linger", sqs.DefaultAckLinger, "the cost run's manager.Deps.AckLinger, as weir-controller sets it (negative: none)")
	withCost := flag.Bool("cost", true, "run the cost model")
	onlyCost := flag.Bool("only-cost", false, "run the cost model alone (no decoding or load runs)")
	verbose := flag.Bool("v", false, "log the controller's warnings to stderr")
	flag.Parse()

	var counts []int
	for f := range strings.SplitSeq(*jobsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-jobs %q: give positive job counts separated by commas", *jobsFlag)
		}
		counts = append(counts, n)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("create the CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	var logw io.Writer = io.Discard
	if *verbose {
		logw = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}))

	rep := Report{GeneratedAt: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.GOMAXPROCS(0), StoreLatencyMs: ms(*latency),
		StoreConcurrency: *concurrency, TakeoverCheckpoints: *checkpoints}

	if *onlyCost {
		counts, *withCost = nil, true
	} else if !*takeoverOnly {
		fmt.Fprintln(os.Stderr, "decoding a heartbeat envelope…")
		benchDecode(&rep)
	}

	for _, n := range counts {
		o := loadOptions{jobs: n, latency: *latency, warmup: *warmup, window: *window, failRate: *failRate,
			readEvery: *readEvery, checkpoint: 10 * time.Second, takeover: 2 * time.Minute, quiet: 3 * time.Second,
			concurrency: *concurrency, checkpoints: *checkpoints, takeoverOnly: *takeoverOnly}
		if *calibrate && !*takeoverOnly {
			fmt.Fprintf(os.Stderr, "%d jobs: calibration (plain consumer)…\n", n)
			c := o
			c.plain, c.window = true, min(o.window, 10*time.Second)
			r, err := runLoad(ctx, c, log)
			if err != nil {
				return fmt.Errorf("calibration with %d jobs: %w", n, err)
			}
			rep.Calibration = append(rep.Calibration, r)
		}
		fmt.Fprintf(os.Stderr, "%d jobs: controller…\n", n)
		if *memProfile != "" {
			o.memProfile = fmt.Sprintf("%s.%d", *memProfile, n)
		}
		r, err := runLoad(ctx, o, log)
		if err != nil {
			return fmt.Errorf("load with %d jobs: %w", n, err)
		}
		if len(rep.Calibration) > 0 {
			// The simulator's CPU grows with what it sends: scale the
			// calibration's CPU per message to this run's rate.
			c := rep.Calibration[len(rep.Calibration)-1]
			sim := c.CPUSecondsPerSecond
			if c.MessagesPerSecondIn > 0 {
				sim *= r.MessagesPerSecondIn / c.MessagesPerSecondIn
			}
			r.SimCPUSecondsPerSecond = sim
			r.ControllerCPUPerSecond = max(0, r.CPUSecondsPerSecond-sim)
			project(&r)
		}
		rep.Load = append(rep.Load, r)
		if n >= rep.TakeoverJobs {
			rep.TakeoverJobs, rep.TakeoverSeconds, rep.TakeoverRequestsPerJob, rep.TakeoverCPUSeconds = n, r.TakeoverSeconds, r.TakeoverRequestsPerJob, r.TakeoverCPUSeconds
		}
	}

	if *withCost && !*takeoverOnly {
		fmt.Fprintln(os.Stderr, "cost model…")
		cost, err := costReport(ctx, log, *latency, *receiveLinger, *ackLinger)
		if err != nil {
			return err
		}
		rep.Cost = cost
	}

	printReport(os.Stdout, &rep)
	if *out == "" {
		return nil
	}
	data, err := json.MarshalIndent(&rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return fmt.Errorf("create the report's directory: %w", err)
	}
	if err := os.WriteFile(*out, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	fmt.Fprintln(os.Stderr, "wrote", *out)
	return nil
}

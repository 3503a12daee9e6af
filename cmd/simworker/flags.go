package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/worker"
)

// settings are what the flags ask the simulated pipeline to do. Times are
// measured from when the worker's subtasks start.
type settings struct {
	sources    []string
	committing []string

	recordsPerSecond float64
	recordBytes      uint64
	backpressure     float64
	watermarkLag     time.Duration

	finishAfterRecords uint64
	finishAfter        time.Duration

	failAt      time.Duration
	failSubtask string // op[index]; empty: the worker's first subtask
	failRetry   protocol.RetryHint
	failDomain  job.ErrorDomain

	stopHeartbeatsAt time.Duration
	hangCheckpoint   int64
	failCheckpoint   int64
	commitDelay      time.Duration
	crashAt          time.Duration
	crashCode        int

	logLevel slog.Level
}

const usageHead = `simworker is a simulated weir worker: a pipeline that reports records,
bytes, backpressure and watermarks, and follows its job's command record.
It reads its identity from the environment (WEIR_JOB_ID, WEIR_RUN_ID,
WEIR_WORKER_ID, WEIR_WORKER_QUEUE_URL, WEIR_JOBS_TABLE, and optionally
WEIR_WORKER_SLOTS and WEIR_HEARTBEAT_INTERVAL) and AWS settings from the
usual AWS_* variables. Times are counted from when its subtasks start.

Usage: simworker [flags]

`

// parseFlags reads args. A bad flag returns an error that says which and
// how to fix it; -h returns flag.ErrHelp after printing the usage.
func parseFlags(args []string, out io.Writer) (settings, error) {
	var s settings
	fs := flag.NewFlagSet("simworker", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, usageHead)
		fs.PrintDefaults()
	}
	var sources, committing, failRetry, failDomain, logLevel string
	fs.StringVar(&sources, "sources", "source", "comma-separated `operators` that are sources (they finish with -finish-after-records or -finish-after)")
	fs.StringVar(&committing, "committing", "", "comma-separated `operators` that are committing (two-phase) sinks")
	fs.Float64Var(&s.recordsPerSecond, "records-per-second", 1000, "records each subtask processes per second")
	fs.Uint64Var(&s.recordBytes, "record-bytes", 200, "bytes per record")
	fs.Float64Var(&s.backpressure, "backpressure", 0.05, "share of time each subtask reports waiting on its outputs, 0 to 1")
	fs.DurationVar(&s.watermarkLag, "watermark-lag", 2*time.Second, "how far the reported watermark trails the clock")
	fs.Uint64Var(&s.finishAfterRecords, "finish-after-records", 0, "sources finish after this many records each (0: never)")
	fs.DurationVar(&s.finishAfter, "finish-after", 0, "sources finish after this long (0: never)")
	fs.DurationVar(&s.failAt, "fail-at", 0, "fail a subtask this long after the start (0: never)")
	fs.StringVar(&s.failSubtask, "fail-subtask", "", "the `op[index]` -fail-at fails (default: the worker's first subtask)")
	fs.StringVar(&failRetry, "fail-retry", "backoff", "whether the failure may pass: backoff (restart the job) or none (fail it)")
	fs.StringVar(&failDomain, "fail-domain", "external", "whose fault the failure is: user, internal or external")
	fs.DurationVar(&s.stopHeartbeatsAt, "stop-heartbeats-at", 0, "stop sending envelopes this long after the start, as a hung worker would (0: never)")
	fs.Int64Var(&s.hangCheckpoint, "hang-checkpoint", 0, "checkpoints of this `epoch` and later never finish (0: none)")
	fs.Int64Var(&s.failCheckpoint, "fail-checkpoint", 0, "checkpoints of this `epoch` and later fail (0: none)")
	fs.DurationVar(&s.commitDelay, "commit-delay", 0, "how long each commit takes")
	fs.DurationVar(&s.crashAt, "crash-at", 0, "exit with -crash-code this long after the start, without stopping (0: never)")
	fs.IntVar(&s.crashCode, "crash-code", 3, "the exit status of -crash-at, 1 to 125")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	var problems []error
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Errorf("unexpected argument %q: simworker takes flags only", fs.Arg(0)))
	}
	s.sources, s.committing = splitList(sources), splitList(committing)
	s.failRetry, s.failDomain = protocol.RetryHint(failRetry), job.ErrorDomain(failDomain)
	if s.failRetry != protocol.RetryBackoff && s.failRetry != protocol.RetryNone {
		problems = append(problems, fmt.Errorf("-fail-retry %q: use backoff or none", failRetry))
	}
	switch s.failDomain {
	case job.DomainUser, job.DomainInternal, job.DomainExternal:
	default:
		problems = append(problems, fmt.Errorf("-fail-domain %q: use user, internal or external", failDomain))
	}
	if s.failSubtask != "" {
		if _, err := parseSubtask(s.failSubtask); err != nil {
			problems = append(problems, fmt.Errorf("-fail-subtask: %w", err))
		}
	}
	if s.recordsPerSecond < 0 {
		problems = append(problems, fmt.Errorf("-records-per-second %g: must not be negative", s.recordsPerSecond))
	}
	if s.backpressure < 0 || s.backpressure > 1 {
		problems = append(problems, fmt.Errorf("-backpressure %g: use a share from 0 to 1", s.backpressure))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"watermark-lag", s.watermarkLag}, {"finish-after", s.finishAfter}, {"fail-at", s.failAt},
		{"stop-heartbeats-at", s.stopHeartbeatsAt}, {"commit-delay", s.commitDelay}, {"crash-at", s.crashAt}} {
		if d.v < 0 {
			problems = append(problems, fmt.Errorf("-%s %s: must not be negative", d.name, d.v))
		}
	}
	if s.hangCheckpoint < 0 || s.failCheckpoint < 0 {
		problems = append(problems, errors.New("-hang-checkpoint and -fail-checkpoint name epochs: 1 or more, or 0 for none"))
	}
	if s.crashCode < 1 || s.crashCode > 125 {
		problems = append(problems, fmt.Errorf("-crash-code %d: use 1 to 125 (0 would look like a clean exit)", s.crashCode))
	}
	if err := s.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		problems = append(problems, fmt.Errorf("-log-level %q: use debug, info, warn or error", logLevel))
	}
	if len(problems) > 0 {
		err := errors.Join(problems...)
		fmt.Fprintf(out, "simworker: %v\nRun simworker -h for the flags.\n", err)
		return s, err
	}
	return s, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseSubtask reads op[index].
func parseSubtask(s string) (worker.Subtask, error) {
	op, rest, ok := strings.Cut(s, "[")
	idx, closed := strings.CutSuffix(rest, "]")
	n, err := strconv.Atoi(idx)
	if !ok || !closed || op == "" || err != nil || n < 0 {
		return worker.Subtask{}, fmt.Errorf("%q is not a subtask: write op[index], such as map[0]", s)
	}
	return worker.Subtask{Operator: op, Index: n}, nil
}

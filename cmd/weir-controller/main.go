// Command weir-controller is weir's long-running controller: an ECS task on
// AWS, a local process on the emulator. It campaigns for the lease and,
// while it holds it, runs every job's loop, receives the workers' messages
// and starts and stops workers through the chosen launcher. A standby
// waits for the lease and holds no worker messages.
//
// Its tables and queue come from the environment weir-resources prints:
//
//	eval "$(weir-resources create --stack weir-local)"
//	weir-controller --launcher process
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	awsecs "github.com/aws/aws-sdk-go-v2/service/ecs"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/core/inbox"
	"github.com/weirstream/weir/core/manager"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/infra/accounting"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/faults"
	"github.com/weirstream/weir/infra/launcher/ecs"
	"github.com/weirstream/weir/infra/launcher/external"
	"github.com/weirstream/weir/infra/launcher/process"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/sqs"
	"github.com/weirstream/weir/infra/telemetry"
)

// Exit codes: 2 for settings that do not work, 1 for a failure later.
const (
	exitFailure  = 1
	exitSettings = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal the default handling returns, so a second
	// one ends a shutdown that hangs.
	context.AfterFunc(ctx, stop)
	cmd := newRootCommand(os.Getenv)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "weir-controller:", err)
		if errors.As(err, new(settingsError)) {
			os.Exit(exitSettings)
		}
		os.Exit(exitFailure)
	}
}

// settingsError marks errors in the settings, found before any AWS call.
type settingsError struct{ error }

func newRootCommand(getenv func(string) string) *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "weir-controller --launcher process|ecs|external [flags]",
		Short: "Run weir's job loops while holding the controller lease",
		Long: `weir-controller campaigns for the controller lease and, while it holds it,
runs every active job, receives worker messages and starts and stops
workers. Run two or more for fail-over: the others wait as standbys.

It reads its tables and queue from the environment that weir-resources
prints and the template's outputs give: WEIR_JOBS_TABLE, WEIR_LEASE_TABLE
and WEIR_WORKER_QUEUE_URL. AWS settings come from the SDK's usual sources
(AWS_REGION, AWS_ENDPOINT_URL for the emulator, credentials), and
OpenTelemetry's from OTEL_* (nothing is exported when none is set).

SIGTERM or SIGINT stops the job loops and releases the lease at once, so a
standby takes over without waiting for the lease to expire.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return settingsError{fmt.Errorf("unexpected arguments %q: every setting is a flag (see --help)", args)}
			}
			return nil
		},
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.settings(getenv)
			if err != nil {
				return settingsError{err}
			}
			return serve(cmd.Context(), s)
		},
	}
	f.register(cmd.Flags())
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return settingsError{fmt.Errorf("%w (see --help)", err)}
	})
	return cmd
}

// serve builds the controller from valid settings and runs it until ctx
// ends.
func serve(ctx context.Context, s settings) error {
	log, err := telemetry.NewLogger(s.LogFormat, s.LogLevel)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "weir-controller", Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 300*time.Millisecond)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", "err", err)
		}
	}()
	ledger, err := accounting.NewLedger()
	if err != nil {
		return err
	}
	recorder, err := telemetry.NewRecorder(tel.MeterProvider(), tel.TracerProvider(), nil)
	if err != nil {
		return err
	}
	defer recorder.Close()

	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("load the AWS configuration: %w (check AWS_REGION, AWS_PROFILE and credentials)", err)
	}
	awsCfg = ledger.Instrument(awsCfg)
	if len(s.TestFaults) > 0 {
		if awsCfg, err = withTestFaults(awsCfg, s, log); err != nil {
			return err
		}
	}
	db := dynamo.NewClient(awsCfg)
	st, err := dynamo.NewStore(db, s.JobsTable)
	if err != nil {
		return err
	}
	s.Lease.Logger = log
	lease, err := dynamo.NewLease(db, s.Lease)
	if err != nil {
		return err
	}
	// The manager's tenure runs the inbox's receive loop, so a standby
	// holds no worker messages.
	in, err := newInbox(awssqs.NewFromConfig(awsCfg), s, log)
	if err != nil {
		return err
	}
	fl, err := newLauncher(ctx, s, awsCfg, log)
	if err != nil {
		return err
	}
	mgr, err := manager.New(manager.Deps{
		Store: st, Inbox: in, Fleet: fl, Telemetry: recorder, Log: log, PollInterval: s.PollInterval,
		Settings: s.Controller, AckLinger: ackLinger(s.AckLinger),
	})
	if err != nil {
		return err
	}

	ready := &readiness{}
	health, err := listenHealth(s.HealthAddr, ready)
	if err != nil {
		return err
	}
	log.Info("weir-controller starting", "launcher", s.Launcher, "jobs_table", s.JobsTable, "lease_table", s.LeaseTable,
		"urgent_queue", s.WorkerUrgentQueueURL != "", "lease", s.Lease.Name, "owner", lease.Owner(), "health_addr", health.Addr(), "metrics_exporter", tel.Exporter(), "trace_exporter", tel.TraceExporter())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return health.run(gctx) })
	g.Go(func() error {
		reportLeading(gctx, log, clock.Real{}, os.Getenv(envStack), ready.leading)
		return nil
	})
	g.Go(func() error {
		probe := func(ctx context.Context) error { _, err := lease.Record(ctx); return err }
		err := manager.RunAsLeader(gctx, trackedLease{inner: lease, probe: probe, r: ready}, clock.Real{}, log,
			func(ctx context.Context, fence store.Fence) error { return mgr.Run(ctx, fence) })
		if err == nil && gctx.Err() == nil {
			err = errors.New("the leader loop ended on its own")
		}
		return err
	})
	err = g.Wait()
	if ctx.Err() != nil {
		log.Info("weir-controller stopped", "reason", context.Cause(ctx).Error())
		return nil
	}
	return err
}

// withTestFaults sends every AWS request through a fault injector
// (--test-faults, for fault campaigns); each fault it draws is logged, so
// a campaign can count what each controller met even if it is killed.
func withTestFaults(cfg aws.Config, s settings, log *slog.Logger) (aws.Config, error) {
	base := cfg.HTTPClient
	if base == nil {
		base = awshttp.NewBuildableClient()
	}
	inj, err := faults.New(faults.Options{Seed: s.TestFaultsSeed, Rules: s.TestFaults, Base: base,
		OnInject: func(k faults.Kind, op string) { log.Info("test fault injected", "kind", string(k), "operation", op) }})
	if err != nil {
		return cfg, err
	}
	log.Warn("TEST-ONLY fault injection is on: AWS requests meet injected faults", "rules", len(s.TestFaults), "seed", s.TestFaultsSeed)
	cfg.HTTPClient = inj
	return cfg, nil
}

// newLauncher builds the chosen launcher; the ECS one first checks its
// cluster and task definition.
func newLauncher(ctx context.Context, s settings, cfg aws.Config, log *slog.Logger) (fleet.Launcher, error) {
	switch s.Launcher {
	case launcherProcess:
		exe, _ := os.Executable()
		command := besideExecutable(s.Process.Command, exe, exec.LookPath)
		o := process.Options{Command: command, StateDir: s.Process.StateDir, Grace: s.Process.Grace, Logger: log}
		if s.WorkerUrgentQueueURL != "" {
			// The flag may name it where the environment does not.
			o.Env = []string{resources.EnvWorkerUrgentQueueURL + "=" + s.WorkerUrgentQueueURL}
		}
		return process.New(o)
	case launcherECS:
		o := s.ECS
		o.Logger = log
		l, err := ecs.New(awsecs.NewFromConfig(cfg), o)
		if err != nil {
			return nil, err
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := l.Check(cctx); err != nil {
			return nil, fmt.Errorf("%w (check --ecs-cluster, --ecs-task-definition and --ecs-container)", err)
		}
		return l, nil
	case launcherExternal:
		return external.New(log), nil
	}
	return nil, fmt.Errorf("unknown launcher %q", s.Launcher)
}

// newInbox makes the inbox of the worker queue, lingering between partial
// receives so they carry several messages, and, with an urgent queue, fans
// it in with an inbox of that queue that never lingers: failures and
// finished sources then reach their job at once. One receiver suffices
// for the urgent queue: its messages are rare.
func newInbox(client *awssqs.Client, s settings, log *slog.Logger) (inbox.Inbox, error) {
	routine, err := sqs.NewInbox(client, s.WorkerQueueURL, sqs.InboxOptions{Logger: log, Linger: s.ReceiveLinger})
	if err != nil || s.WorkerUrgentQueueURL == "" {
		return routine, err
	}
	urgent, err := sqs.NewInbox(client, s.WorkerUrgentQueueURL, sqs.InboxOptions{Logger: log, Receivers: 1})
	if err != nil {
		return nil, err
	}
	return inbox.NewFanIn(clock.Real{}, routine, urgent)
}

// ackLinger is the manager's AckLinger for a linger setting: the manager
// reads zero as its default and a negative value as none.
func ackLinger(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

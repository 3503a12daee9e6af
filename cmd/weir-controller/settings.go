package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	jobcontroller "github.com/weirstream/weir/core/controller"
	"github.com/weirstream/weir/core/manager"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/faults"
	"github.com/weirstream/weir/infra/launcher/ecs"
	"github.com/weirstream/weir/infra/launcher/process"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/sqs"
	"github.com/weirstream/weir/infra/telemetry"
)

// Launcher kinds.
const (
	launcherProcess  = "process"
	launcherECS      = "ecs"
	launcherExternal = "external"
)

// settings are everything the controller needs to start, checked before
// anything is built.
type settings struct {
	// From the environment weir-resources prints (or the template's
	// outputs give).
	JobsTable      string
	LeaseTable     string
	WorkerQueueURL string
	// WorkerUrgentQueueURL, if set, is received from with no linger, so a
	// worker's failure or finished source does not wait for the batching
	// of WorkerQueueURL (docs/protocol.md). Empty: one queue, as before.
	WorkerUrgentQueueURL string

	Launcher string
	Process  processSettings
	ECS      ecs.Options

	PollInterval time.Duration
	// ReceiveLinger is the worker queue inbox's Linger; AckLinger the
	// manager's.
	ReceiveLinger, AckLinger time.Duration
	// Controller holds the job loops' tunables; only the heartbeat
	// time-out is a flag, the rest keep their defaults.
	Controller jobcontroller.Settings
	Lease      dynamo.LeaseConfig
	HealthAddr string
	LogLevel   string
	LogFormat  string

	// TestFaults (test only) are AWS faults injected into every request
	// the controller sends, drawn from TestFaultsSeed; none by default.
	TestFaults     []faults.Rule
	TestFaultsSeed uint64
}

type processSettings struct {
	Command  []string
	StateDir string
	Grace    time.Duration
}

// flags holds the raw flag values until they are checked.
type flags struct {
	launcher string

	processCommand  string
	processStateDir string
	processGrace    durationFlag

	ecsCluster        string
	ecsTaskDefinition string
	ecsContainer      string
	ecsSubnets        []string
	ecsSecurityGroups []string
	ecsPublicIP       bool

	pollInterval       durationFlag
	receiveLinger      durationFlag
	urgentQueueURL     string
	ackLinger          durationFlag
	heartbeatTimeout   durationFlag
	leaseName          string
	leaseOwner         string
	leaseDuration      durationFlag
	leaseRenewInterval durationFlag
	leaseRenewDeadline durationFlag

	healthAddr string
	logLevel   string
	logFormat  string

	testFaults     string
	testFaultsSeed uint64

	fs *pflag.FlagSet
}

// defaultStateDir is shared by every controller of the host, so that one
// that takes over finds its predecessor's workers.
func defaultStateDir() string { return filepath.Join(os.TempDir(), "weir", "workers") }

func (f *flags) register(fs *pflag.FlagSet) {
	f.fs = fs
	fs.StringVar(&f.launcher, "launcher", "", "how workers are started: process (local processes), ecs (ECS Fargate tasks) or external (started by someone else)")

	fs.StringVar(&f.processCommand, "process-command", strings.Join(process.DefaultCommand, " "),
		"worker command for --launcher process, split at spaces; arguments may use {{.JobID}}, {{.RunID}}, {{.WorkerID}}, {{.Slots}}, {{.Program}}")
	fs.StringVar(&f.processStateDir, "process-state-dir", defaultStateDir(), "directory of the workers' pid files and logs, shared by every controller on this host")
	f.processGrace = durationFlag{d: process.DefaultGrace}
	fs.Var(&f.processGrace, "process-grace", "time a worker process has to exit after SIGTERM before SIGKILL")

	fs.StringVar(&f.ecsCluster, "ecs-cluster", "", "ECS cluster (name or ARN) the worker tasks run in")
	fs.StringVar(&f.ecsTaskDefinition, "ecs-task-definition", "", "worker task definition (family, family:revision or ARN); network mode awsvpc")
	fs.StringVar(&f.ecsContainer, "ecs-container", ecs.DefaultContainer, "name of the worker's container in the task definition")
	fs.StringSliceVar(&f.ecsSubnets, "ecs-subnets", nil, "subnet ids for the worker tasks, comma-separated")
	fs.StringSliceVar(&f.ecsSecurityGroups, "ecs-security-groups", nil, "security group ids for the worker tasks, comma-separated")
	fs.BoolVar(&f.ecsPublicIP, "ecs-assign-public-ip", false, "give worker tasks a public IP (public subnets without a NAT gateway)")

	f.pollInterval = durationFlag{d: manager.DefaultPollInterval}
	fs.Var(&f.pollInterval, "poll-interval", "how often the active jobs are read")
	f.receiveLinger = durationFlag{d: sqs.DefaultReceiveLinger}
	fs.Var(&f.receiveLinger, "receive-linger", "after a receive from the worker queue that was not full, wait this long before the next (0 to 1m; default from "+envReceiveLinger+" if set): messages gather, so receives and deletes carry several, at up to this much delay at a trickle")
	fs.StringVar(&f.urgentQueueURL, "urgent-queue-url", "", "URL of the urgent worker queue (stack output WorkerUrgentQueueUrl; default from "+resources.EnvWorkerUrgentQueueURL+" if set), received from with no linger so task failures and finished sources reach their job at once; empty: workers send everything to the worker queue")
	f.ackLinger = durationFlag{d: sqs.DefaultAckLinger}
	fs.Var(&f.ackLinger, "ack-linger", "handled worker messages wait up to this long for company before a delete call that would carry fewer than ten (0 to 10s; default from "+envAckLinger+" if set)")
	f.heartbeatTimeout = durationFlag{d: protocol.DefaultHeartbeatTimeout}
	fs.Var(&f.heartbeatTimeout, "heartbeat-timeout", "a worker silent for this long is taken as dead; keep it several of the workers' heartbeat intervals (WEIR_HEARTBEAT_INTERVAL)")
	fs.StringVar(&f.leaseName, "lease-name", "controller", "name of the lease the controllers of one deployment contend for")
	fs.StringVar(&f.leaseOwner, "lease-owner", "", "this controller's name in the lease record (default: host name and a random suffix)")
	f.leaseDuration = durationFlag{d: dynamo.DefaultLeaseDuration}
	fs.Var(&f.leaseDuration, "lease-duration", "how long a standby watches an unchanged lease record before it takes over")
	f.leaseRenewInterval = durationFlag{d: dynamo.DefaultRenewInterval}
	fs.Var(&f.leaseRenewInterval, "lease-renew-interval", "how often the leader renews the lease")
	f.leaseRenewDeadline = durationFlag{d: dynamo.DefaultRenewDeadline}
	fs.Var(&f.leaseRenewDeadline, "lease-renew-deadline", "the leader stops every job loop when it has not renewed for this long")

	fs.StringVar(&f.healthAddr, "health-addr", "127.0.0.1:8081", "address of /healthz and /readyz")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "json", "json or text")

	fs.StringVar(&f.testFaults, "test-faults", "", `TEST ONLY, never in production: inject AWS faults into every request this controller sends, e.g. "lost_answer rate=0.04 ops=PutItem,UpdateItem; throttle rate=0.03; latency rate=0.05 delay=40ms" (kinds server_error, throttle, latency, lost_answer; settings rate=, ops=, first, limit=, delay=); each fault is logged`)
	fs.Uint64Var(&f.testFaultsSeed, "test-faults-seed", 0, "TEST ONLY: seed of --test-faults' draws, so a run can be repeated")
}

// settings checks the flags and the environment (read through getenv) and
// returns the settings, or one error that names every problem and how to
// fix it.
func (f *flags) settings(getenv func(string) string) (settings, error) {
	var p problems
	s := settings{
		JobsTable:      strings.TrimSpace(getenv(resources.EnvJobsTable)),
		LeaseTable:     strings.TrimSpace(getenv(resources.EnvLeaseTable)),
		WorkerQueueURL: strings.TrimSpace(getenv(resources.EnvWorkerQueueURL)),
		Launcher:       f.launcher,
		HealthAddr:     f.healthAddr,
		LogLevel:       f.logLevel,
		LogFormat:      f.logFormat,
	}
	var unset []string
	for _, v := range []struct{ name, value string }{
		{resources.EnvJobsTable, s.JobsTable}, {resources.EnvLeaseTable, s.LeaseTable}, {resources.EnvWorkerQueueURL, s.WorkerQueueURL},
	} {
		if v.value == "" {
			unset = append(unset, v.name)
		}
	}
	if len(unset) > 0 {
		p.addf(`%s not set: set them from the stack's outputs, e.g. eval "$(weir-resources create --stack NAME)"`, strings.Join(unset, ", "))
	}
	if s.WorkerQueueURL != "" && !isQueueURL(s.WorkerQueueURL) {
		p.addf("%s=%q is not a queue URL: want https://sqs.REGION.amazonaws.com/ACCOUNT/NAME", resources.EnvWorkerQueueURL, s.WorkerQueueURL)
	}
	urgentSource := "--urgent-queue-url"
	s.WorkerUrgentQueueURL = strings.TrimSpace(f.urgentQueueURL)
	if f.fs == nil || !f.fs.Changed("urgent-queue-url") {
		urgentSource = resources.EnvWorkerUrgentQueueURL
		s.WorkerUrgentQueueURL = strings.TrimSpace(getenv(resources.EnvWorkerUrgentQueueURL))
	}
	switch {
	case s.WorkerUrgentQueueURL == "":
	case !isQueueURL(s.WorkerUrgentQueueURL):
		p.addf("%s=%q is not a queue URL: want https://sqs.REGION.amazonaws.com/ACCOUNT/NAME (stack output WorkerUrgentQueueUrl), or leave it unset for one queue", urgentSource, s.WorkerUrgentQueueURL)
	case s.WorkerUrgentQueueURL == s.WorkerQueueURL:
		p.addf("%s is the worker queue's URL: name the urgent queue (stack output WorkerUrgentQueueUrl), or leave it unset for one queue", urgentSource)
	}

	f.checkLauncher(&s, &p)
	s.ReceiveLinger = f.linger(&p, getenv, "receive-linger", envReceiveLinger, &f.receiveLinger, time.Minute)
	s.AckLinger = f.linger(&p, getenv, "ack-linger", envAckLinger, &f.ackLinger, 10*time.Second)

	for _, d := range []struct {
		name string
		flag *durationFlag
	}{
		{"poll-interval", &f.pollInterval}, {"heartbeat-timeout", &f.heartbeatTimeout}, {"process-grace", &f.processGrace},
		{"lease-duration", &f.leaseDuration}, {"lease-renew-interval", &f.leaseRenewInterval}, {"lease-renew-deadline", &f.leaseRenewDeadline},
	} {
		if d.flag.err != nil {
			p.addf("--%s %q is not a duration: write it like 500ms, 10s or 1m", d.name, d.flag.raw)
		}
	}
	s.PollInterval = f.pollInterval.d
	if f.pollInterval.err == nil && s.PollInterval <= 0 {
		p.addf("--poll-interval %s must be positive", s.PollInterval)
	}

	s.Controller = jobcontroller.DefaultSettings()
	s.Controller.HeartbeatTimeout = f.heartbeatTimeout.d
	if f.heartbeatTimeout.err == nil {
		if err := s.Controller.Validate(); err != nil {
			p.addf("--heartbeat-timeout %s: %v", s.Controller.HeartbeatTimeout, err)
		}
	}

	s.Lease = dynamo.LeaseConfig{
		Table: s.LeaseTable, Name: strings.TrimSpace(f.leaseName), Owner: strings.TrimSpace(f.leaseOwner),
		Duration: f.leaseDuration.d, RenewInterval: f.leaseRenewInterval.d, RenewDeadline: f.leaseRenewDeadline.d,
	}
	if s.Lease.Name == "" {
		p.addf("--lease-name is empty: name the lease every controller of this deployment contends for (default controller)")
	}
	if f.leaseDuration.err == nil && f.leaseRenewInterval.err == nil && f.leaseRenewDeadline.err == nil {
		// The table and the name are reported above; the timings are
		// checked whatever they are.
		check := s.Lease
		check.Table, check.Name = "lease", "lease"
		if err := check.Validate(); err != nil {
			p.addf("lease timings (--lease-duration %s, --lease-renew-interval %s, --lease-renew-deadline %s): %s",
				check.Duration, check.RenewInterval, check.RenewDeadline, strings.TrimPrefix(err.Error(), "lease: "))
		}
	}

	if strings.TrimSpace(f.testFaults) != "" {
		rules, err := faults.ParseRules(f.testFaults)
		if err != nil {
			p.addf("--test-faults %q: %s", f.testFaults, strings.TrimPrefix(err.Error(), "faults: "))
		}
		s.TestFaults, s.TestFaultsSeed = rules, f.testFaultsSeed
	} else if f.fs != nil && f.fs.Changed("test-faults-seed") {
		p.addf("--test-faults-seed is set without --test-faults: add the rules to inject, or drop the seed")
	}

	if _, port, err := net.SplitHostPort(s.HealthAddr); err != nil {
		p.addf("--health-addr %q is not HOST:PORT, e.g. 127.0.0.1:8081 (or :8081 for every interface)", s.HealthAddr)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.addf("--health-addr %q: port %q is not a number from 0 to 65535", s.HealthAddr, port)
	}
	if _, err := telemetry.NewLoggerTo(io.Discard, s.LogFormat, s.LogLevel); err != nil {
		p.addf("--log-level/--log-format: %v", err)
	}
	if err := p.err(); err != nil {
		return settings{}, err
	}
	return s, nil
}

func (f *flags) checkLauncher(s *settings, p *problems) {
	switch s.Launcher {
	case launcherProcess:
		s.Process = processSettings{Command: strings.Fields(f.processCommand), StateDir: f.processStateDir, Grace: f.processGrace.d}
		if err := process.CheckCommand(s.Process.Command); err != nil {
			p.addf("--process-command %q: %s", f.processCommand, strings.TrimPrefix(err.Error(), "process launcher: "))
		}
		if strings.TrimSpace(s.Process.StateDir) == "" {
			p.addf("--process-state-dir is empty: name a directory every controller on this host shares")
		}
		if f.processGrace.err == nil && s.Process.Grace < 0 {
			p.addf("--process-grace %s is negative", s.Process.Grace)
		}
	case launcherECS:
		s.ECS = ecs.Options{
			Cluster: f.ecsCluster, TaskDefinition: f.ecsTaskDefinition, Container: f.ecsContainer,
			Subnets: f.ecsSubnets, SecurityGroups: f.ecsSecurityGroups, AssignPublicIP: f.ecsPublicIP,
			// Workers talk to the controller's stack.
			Env: map[string]string{resources.EnvWorkerQueueURL: s.WorkerQueueURL, resources.EnvJobsTable: s.JobsTable},
		}
		if s.WorkerUrgentQueueURL != "" {
			s.ECS.Env[resources.EnvWorkerUrgentQueueURL] = s.WorkerUrgentQueueURL
		}
		var missing []string
		if s.ECS.Cluster == "" {
			missing = append(missing, "--ecs-cluster")
		}
		if s.ECS.TaskDefinition == "" {
			missing = append(missing, "--ecs-task-definition")
		}
		if len(s.ECS.Subnets) == 0 {
			missing = append(missing, "--ecs-subnets")
		}
		if len(missing) > 0 {
			p.addf("--launcher ecs needs %s", strings.Join(missing, ", "))
		} else if err := s.ECS.Validate(); err != nil {
			p.addf("%s", strings.TrimPrefix(err.Error(), "ecs launcher: "))
		}
	case launcherExternal:
	case "":
		p.addf("--launcher is not set: choose process (local worker processes), ecs (ECS Fargate tasks) or external (workers started by someone else)")
	default:
		p.addf("--launcher %q is not process, ecs or external", s.Launcher)
	}
	// A setting for another launcher is most likely a mistake in the
	// launcher's choice.
	for _, prefix := range []string{launcherProcess, launcherECS} {
		if prefix == s.Launcher || s.Launcher == "" {
			continue
		}
		f.fs.Visit(func(fl *pflag.Flag) {
			if strings.HasPrefix(fl.Name, prefix+"-") {
				p.addf("--%s is set but --launcher is %q: drop it, or use --launcher %s", fl.Name, s.Launcher, prefix)
			}
		})
	}
}

// The environment sets --receive-linger and --ack-linger when the flags
// are not given.
const (
	envReceiveLinger = "WEIR_RECEIVE_LINGER"
	envAckLinger     = "WEIR_ACK_LINGER"
)

// linger takes a linger from its flag, else from the environment, else
// the default, and checks it is from 0 to most.
func (f *flags) linger(p *problems, getenv func(string) string, name, env string, fl *durationFlag, most time.Duration) time.Duration {
	source := "--" + name + " " + fl.raw
	if !f.fs.Changed(name) {
		if v := strings.TrimSpace(getenv(env)); v != "" {
			source = fmt.Sprintf("%s=%s", env, v)
			_ = fl.Set(v)
		}
	}
	if fl.err != nil {
		p.addf("%s is not a duration: write it like 500ms, 1s or 2s", source)
		return 0
	}
	if fl.d < 0 || fl.d > most {
		p.addf("%s must be from 0 (no linger) to %s", source, most)
	}
	return fl.d
}

// isQueueURL says whether v looks like an SQS queue URL (http for the
// emulator).
func isQueueURL(v string) bool {
	u, err := url.Parse(v)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// problems collects what is wrong with the settings.
type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return errors.New("invalid settings (see --help):\n  - " + strings.Join(p, "\n  - "))
}

// durationFlag is a duration flag that keeps a malformed value for the
// settings check instead of failing the parse, so that one message can
// name every problem.
type durationFlag struct {
	d   time.Duration
	raw string
	err error
}

func (f *durationFlag) String() string { return f.d.String() }
func (f *durationFlag) Type() string   { return "duration" }

func (f *durationFlag) Set(v string) error {
	f.raw = v
	f.d, f.err = time.ParseDuration(strings.TrimSpace(v))
	return nil
}

// besideExecutable resolves a bare program name that is not on PATH to
// the file of that name next to exe, if there is one: `go build -o bin/
// ./cmd/...` puts simworker beside weir-controller, and a local run then
// needs no PATH change.
func besideExecutable(argv []string, exe string, lookPath func(string) (string, error)) []string {
	if len(argv) == 0 || strings.ContainsRune(argv[0], filepath.Separator) || exe == "" {
		return argv
	}
	if _, err := lookPath(argv[0]); err == nil {
		return argv
	}
	candidate := filepath.Join(filepath.Dir(exe), argv[0])
	if fi, err := os.Stat(candidate); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return argv
	}
	return append([]string{candidate}, argv[1:]...)
}

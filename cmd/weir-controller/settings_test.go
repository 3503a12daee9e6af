package main

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	jobcontroller "github.com/weirstream/weir/core/controller"
	"github.com/weirstream/weir/infra/faults"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/sqs"
)

var stackEnv = map[string]string{
	resources.EnvJobsTable:      "weir-local-Jobs",
	resources.EnvLeaseTable:     "weir-local-Lease",
	resources.EnvWorkerQueueURL: "http://127.0.0.1:4566/000000000000/weir-local-Workers",
}

func parse(t *testing.T, env map[string]string, args ...string) (settings, error) {
	t.Helper()
	var f flags
	fs := pflag.NewFlagSet("weir-controller", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("flag parse of %q: %v", args, err)
	}
	return f.settings(func(k string) string { return env[k] })
}

func TestSettingsGood(t *testing.T) {
	s, err := parse(t, stackEnv, "--launcher", "process", "--process-command", "simworker --fail-at {{.WorkerID}}",
		"--poll-interval", "250ms", "--lease-duration", "3s", "--lease-renew-interval", "500ms", "--lease-renew-deadline", "2s",
		"--heartbeat-timeout", "3s", "--health-addr", ":0", "--log-level", "debug", "--log-format", "text", "--lease-owner", "ctl-a")
	if err != nil {
		t.Fatal(err)
	}
	if s.JobsTable != "weir-local-Jobs" || s.LeaseTable != "weir-local-Lease" || s.Lease.Table != "weir-local-Lease" {
		t.Errorf("tables %q, %q, lease on %q", s.JobsTable, s.LeaseTable, s.Lease.Table)
	}
	if !slices.Equal(s.Process.Command, []string{"simworker", "--fail-at", "{{.WorkerID}}"}) {
		t.Errorf("process command %q", s.Process.Command)
	}
	if s.PollInterval != 250*time.Millisecond || s.Lease.Duration != 3*time.Second || s.Lease.RenewInterval != 500*time.Millisecond ||
		s.Lease.RenewDeadline != 2*time.Second || s.Lease.Owner != "ctl-a" || s.Lease.Name != "controller" {
		t.Errorf("timings and lease: %+v, poll %s", s.Lease, s.PollInterval)
	}
	if want := jobcontroller.DefaultSettings(); s.Controller.HeartbeatTimeout != 3*time.Second || s.Controller.StopWait != want.StopWait {
		t.Errorf("controller settings %+v, want the defaults with a 3s heartbeat time-out", s.Controller)
	}

	s, err = parse(t, stackEnv, "--launcher", "ecs", "--ecs-cluster", "weir", "--ecs-task-definition", "worker:3",
		"--ecs-subnets", "subnet-a,subnet-b", "--ecs-security-groups", "sg-1")
	if err != nil {
		t.Fatal(err)
	}
	if s.ECS.Cluster != "weir" || !slices.Equal(s.ECS.Subnets, []string{"subnet-a", "subnet-b"}) || s.ECS.Container != "worker" {
		t.Errorf("ecs options %+v", s.ECS)
	}
	if s.ECS.Env[resources.EnvWorkerQueueURL] != stackEnv[resources.EnvWorkerQueueURL] || s.ECS.Env[resources.EnvJobsTable] != "weir-local-Jobs" {
		t.Errorf("ECS workers are not pointed at the controller's stack: %v", s.ECS.Env)
	}

	s, err = parse(t, stackEnv, "--launcher", "external")
	if err != nil {
		t.Fatalf("defaults with --launcher external: %v", err)
	}
	if s.TestFaults != nil {
		t.Errorf("faults injected by default: %v", s.TestFaults)
	}

	// Test-only fault injection, for fault campaigns.
	s, err = parse(t, stackEnv, "--launcher", "external", "--test-faults", "lost_answer rate=0.04 ops=PutItem; latency rate=0.5 delay=40ms", "--test-faults-seed", "9")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.TestFaults) != 2 || s.TestFaults[0].Kind != faults.LostAnswer || s.TestFaults[1].Delay != 40*time.Millisecond || s.TestFaultsSeed != 9 {
		t.Errorf("test faults %+v seed %d", s.TestFaults, s.TestFaultsSeed)
	}
}

func TestSettingsNameEveryProblem(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		// want are fragments the one message must hold, one per problem.
		want []string
	}{
		{
			name: "nothing set",
			env:  map[string]string{},
			want: []string{"WEIR_JOBS_TABLE, WEIR_LEASE_TABLE, WEIR_WORKER_QUEUE_URL not set", "weir-resources create", "--launcher is not set"},
		},
		{
			name: "one variable missing",
			env:  map[string]string{resources.EnvJobsTable: "j", resources.EnvWorkerQueueURL: "https://sqs.us-east-1.amazonaws.com/1/q"},
			args: []string{"--launcher", "external"},
			want: []string{"WEIR_LEASE_TABLE not set"},
		},
		{
			name: "queue url",
			env:  map[string]string{resources.EnvJobsTable: "j", resources.EnvLeaseTable: "l", resources.EnvWorkerQueueURL: "weir-local-Workers"},
			args: []string{"--launcher", "external"},
			want: []string{`WEIR_WORKER_QUEUE_URL="weir-local-Workers" is not a queue URL`},
		},
		{
			name: "urgent queue url",
			env:  withEnv(stackEnv, resources.EnvWorkerUrgentQueueURL, "weir-local-urgent"),
			args: []string{"--launcher", "external"},
			want: []string{`WEIR_WORKER_URGENT_QUEUE_URL="weir-local-urgent" is not a queue URL`},
		},
		{
			name: "urgent queue flag is the worker queue",
			env:  stackEnv,
			args: []string{"--launcher", "external", "--urgent-queue-url", stackEnv[resources.EnvWorkerQueueURL]},
			want: []string{"--urgent-queue-url is the worker queue's URL"},
		},
		{
			name: "unknown launcher",
			env:  stackEnv,
			args: []string{"--launcher", "k8s"},
			want: []string{`--launcher "k8s" is not process, ecs or external`},
		},
		{
			name: "ecs without its settings",
			env:  stackEnv,
			args: []string{"--launcher", "ecs", "--ecs-security-groups", "default"},
			want: []string{"--launcher ecs needs --ecs-cluster, --ecs-task-definition, --ecs-subnets"},
		},
		{
			name: "ecs ids",
			env:  stackEnv,
			args: []string{"--launcher", "ecs", "--ecs-cluster", "c", "--ecs-task-definition", "td", "--ecs-subnets", "10.0.0.0/24", "--ecs-security-groups", "default"},
			want: []string{`subnet "10.0.0.0/24" is not a subnet id`, `security group "default" is not a security group id`},
		},
		{
			name: "another launcher's flags",
			env:  stackEnv,
			args: []string{"--launcher", "process", "--ecs-cluster", "c", "--ecs-subnets", "subnet-1"},
			want: []string{`--ecs-cluster is set but --launcher is "process"`, `--ecs-subnets is set but --launcher is "process"`},
		},
		{
			name: "process command",
			env:  stackEnv,
			args: []string{"--launcher", "process", "--process-command", "simworker {{.Job}}", "--process-state-dir", " ", "--process-grace", "-1s"},
			want: []string{`--process-command "simworker {{.Job}}"`, "--process-state-dir is empty", "--process-grace -1s is negative"},
		},
		{
			name: "empty process command",
			env:  stackEnv,
			args: []string{"--launcher", "process", "--process-command", " "},
			want: []string{"--process-command", "empty"},
		},
		{
			name: "durations that do not parse",
			env:  stackEnv,
			args: []string{"--launcher", "external", "--poll-interval", "fast", "--lease-duration", "10", "--process-grace", "soon", "--heartbeat-timeout", "long"},
			want: []string{`--heartbeat-timeout "long" is not a duration`, `--poll-interval "fast" is not a duration`, `--lease-duration "10" is not a duration`, `--process-grace "soon" is not a duration`, `--process-grace is set but --launcher is "external"`},
		},
		{
			name: "durations out of range",
			env:  stackEnv,
			args: []string{"--launcher", "external", "--poll-interval", "0s", "--lease-duration", "5s", "--lease-renew-deadline", "6s", "--heartbeat-timeout", "100ms"},
			want: []string{"--heartbeat-timeout 100ms: heartbeat timeout 100ms must exceed the progress interval 200ms", "--poll-interval 0s must be positive", "lease timings (--lease-duration 5s, --lease-renew-interval 2s, --lease-renew-deadline 6s)", "must be longer than the renew deadline"},
		},
		{
			name: "lease name",
			env:  stackEnv,
			args: []string{"--launcher", "external", "--lease-name", " "},
			want: []string{"--lease-name is empty"},
		},
		{
			name: "health address and logging",
			env:  stackEnv,
			args: []string{"--launcher", "external", "--health-addr", "8081", "--log-level", "verbose", "--log-format", "xml"},
			want: []string{`--health-addr "8081" is not HOST:PORT`, "--log-level/--log-format"},
		},
		{
			name: "test faults",
			env:  stackEnv,
			args: []string{"--launcher", "external", "--test-faults", "lost_answer rate=2"},
			want: []string{`--test-faults "lost_answer rate=2"`, "rate 2 is not in (0, 1]"},
		},
		{
			name: "test faults seed alone",
			env:  stackEnv,
			args: []string{"--launcher", "external", "--test-faults-seed", "3"},
			want: []string{"--test-faults-seed is set without --test-faults"},
		},
		{
			name: "health port",
			env:  stackEnv,
			args: []string{"--launcher", "external", "--health-addr", "127.0.0.1:http"},
			want: []string{`port "http" is not a number`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.env, tc.args...)
			if err == nil {
				t.Fatal("settings accepted")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
			if n := strings.Count(msg, "\n  - "); n < 1 {
				t.Errorf("message lists no problems:\n%s", msg)
			}
		})
	}
}

func TestBesideExecutable(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "weir-controller")
	if err := os.WriteFile(filepath.Join(dir, "simworker"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notFound := func(string) (string, error) { return "", exec.ErrNotFound }
	found := func(p string) (string, error) { return "/usr/bin/" + p, nil }
	for _, tc := range []struct {
		argv []string
		look func(string) (string, error)
		want []string
	}{
		{[]string{"simworker", "-x"}, notFound, []string{filepath.Join(dir, "simworker"), "-x"}},
		{[]string{"simworker"}, found, []string{"simworker"}},
		{[]string{"other"}, notFound, []string{"other"}},
		{[]string{"./simworker"}, notFound, []string{"./simworker"}},
	} {
		if got := besideExecutable(tc.argv, exe, tc.look); !slices.Equal(got, tc.want) {
			t.Errorf("besideExecutable(%q) = %q, want %q", tc.argv, got, tc.want)
		}
	}
}

func TestSettingsReceiveLinger(t *testing.T) {
	env := func(linger string) map[string]string {
		e := maps.Clone(stackEnv)
		if linger != "" {
			e["WEIR_RECEIVE_LINGER"] = linger
		}
		return e
	}
	for _, c := range []struct {
		env  string
		args []string
		want time.Duration
	}{
		{"", nil, sqs.DefaultReceiveLinger},
		{"250ms", nil, 250 * time.Millisecond},
		{"", []string{"--receive-linger", "2s"}, 2 * time.Second},
		{"250ms", []string{"--receive-linger", "0s"}, 0}, // the flag wins
	} {
		s, err := parse(t, env(c.env), append([]string{"--launcher", "external"}, c.args...)...)
		if err != nil {
			t.Fatalf("env %q, args %q: %v", c.env, c.args, err)
		}
		if s.ReceiveLinger != c.want {
			t.Errorf("env %q, args %q: linger %s, want %s", c.env, c.args, s.ReceiveLinger, c.want)
		}
	}
	for _, c := range []struct {
		env  string
		args []string
		want string
	}{
		{"soon", nil, `WEIR_RECEIVE_LINGER=soon is not a duration`},
		{"", []string{"--receive-linger", "-1s"}, "--receive-linger -1s must be from 0 (no linger) to 1m0s"},
		{"2m", nil, "WEIR_RECEIVE_LINGER=2m must be from 0 (no linger) to 1m0s"},
	} {
		_, err := parse(t, env(c.env), append([]string{"--launcher", "external"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("env %q, args %q: error %v, want one saying %q", c.env, c.args, err, c.want)
		}
	}
}

func TestSettingsAckLinger(t *testing.T) {
	s, err := parse(t, stackEnv, "--launcher", "external")
	if err != nil {
		t.Fatal(err)
	}
	if s.AckLinger != sqs.DefaultAckLinger {
		t.Errorf("ack linger %s, want the default %s", s.AckLinger, sqs.DefaultAckLinger)
	}
	env := maps.Clone(stackEnv)
	env["WEIR_ACK_LINGER"] = "750ms"
	if s, err = parse(t, env, "--launcher", "external"); err != nil || s.AckLinger != 750*time.Millisecond {
		t.Errorf("WEIR_ACK_LINGER=750ms: ack linger %s, %v", s.AckLinger, err)
	}
	if s, err = parse(t, env, "--launcher", "external", "--ack-linger", "0"); err != nil || s.AckLinger != 0 || ackLinger(s.AckLinger) >= 0 {
		t.Errorf("--ack-linger 0: ack linger %s (manager gets %s), %v; want none", s.AckLinger, ackLinger(s.AckLinger), err)
	}
	_, err = parse(t, stackEnv, "--launcher", "external", "--ack-linger", "20s")
	if err == nil || !strings.Contains(err.Error(), "--ack-linger 20s must be from 0 (no linger) to 10s") {
		t.Errorf("--ack-linger 20s: %v", err)
	}
}

func withEnv(env map[string]string, k, v string) map[string]string {
	out := maps.Clone(env)
	out[k] = v
	return out
}

func TestSettingsUrgentQueue(t *testing.T) {
	const urgent = "http://127.0.0.1:4566/000000000000/weir-local-worker-urgent"
	s, err := parse(t, stackEnv, "--launcher", "external")
	if err != nil || s.WorkerUrgentQueueURL != "" {
		t.Fatalf("without the setting: urgent queue %q, %v; want none", s.WorkerUrgentQueueURL, err)
	}
	s, err = parse(t, withEnv(stackEnv, resources.EnvWorkerUrgentQueueURL, " "+urgent+" "), "--launcher", "ecs", "--ecs-cluster", "weir",
		"--ecs-task-definition", "worker:3", "--ecs-subnets", "subnet-a")
	if err != nil {
		t.Fatal(err)
	}
	if s.WorkerUrgentQueueURL != urgent || s.ECS.Env[resources.EnvWorkerUrgentQueueURL] != urgent {
		t.Errorf("urgent queue %q, ECS workers get %q; want %q for both", s.WorkerUrgentQueueURL, s.ECS.Env[resources.EnvWorkerUrgentQueueURL], urgent)
	}
	// The flag wins over the environment.
	s, err = parse(t, withEnv(stackEnv, resources.EnvWorkerUrgentQueueURL, "http://elsewhere/1/q"), "--launcher", "external", "--urgent-queue-url", urgent)
	if err != nil || s.WorkerUrgentQueueURL != urgent {
		t.Errorf("with the flag: %q, %v; want %q", s.WorkerUrgentQueueURL, err, urgent)
	}
}

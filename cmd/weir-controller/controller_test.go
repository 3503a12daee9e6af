package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/launcher/process"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/resources/resourcestest"
	"github.com/weirstream/weir/internal/proctest"
)

// buildDir holds the binary once built; TestMain removes it.
var buildDir atomic.Pointer[string]

// buildOnce builds the binary once per test run.
var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "weir-controller-test-")
	if err != nil {
		return "", err
	}
	buildDir.Store(&dir)
	bins, err := proctest.Build(dir, ".")
	if err != nil {
		return "", err
	}
	return bins[0], nil
})

// workerFlag makes the test binary act as a worker: it writes its
// environment to the file named after the flag and waits to be stopped.
const workerFlag = "-weir-test-worker"

func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == workerFlag {
		var env []string
		for _, kv := range os.Environ() {
			if strings.HasPrefix(kv, "WEIR_") || strings.HasPrefix(kv, "AWS_") {
				env = append(env, kv)
			}
		}
		b, _ := json.Marshal(env)
		if os.WriteFile(os.Args[2]+".tmp", b, 0o644) != nil || os.Rename(os.Args[2]+".tmp", os.Args[2]) != nil {
			os.Exit(3)
		}
		for {
			time.Sleep(time.Hour)
		}
	}
	code := m.Run()
	if dir := buildDir.Load(); dir != nil {
		_ = os.RemoveAll(*dir)
	}
	os.Exit(code)
}

func binary(t *testing.T) string {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// controller is one running weir-controller process.
type controller struct {
	*proctest.Process
	t *testing.T
}

// start runs the binary with the test's environment plus env. It is
// killed, with everything in its process group, when the test ends.
func start(t *testing.T, env map[string]string, args ...string) *controller {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p, err := proctest.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	c := &controller{t: t, Process: p}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("output of %s:\n%s", strings.Join(args, " "), p.Out.String())
		}
	})
	return c
}

// healthAddr waits for the start-up line and returns the health address.
func (c *controller) healthAddr() string {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(c.Out.String()))
		for sc.Scan() {
			var line struct {
				Msg        string `json:"msg"`
				HealthAddr string `json:"health_addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "weir-controller starting" {
				return line.HealthAddr
			}
		}
		select {
		case <-c.Done():
			c.t.Fatalf("weir-controller exited during start-up (%v):\n%s", c.Err(), c.Out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	c.t.Fatalf("weir-controller did not log its start within 20 s:\n%s", c.Out.String())
	return ""
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// waitReady waits until /readyz answers 200 with a body holding want.
func waitReady(t *testing.T, addr, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var code int
	var body string
	for time.Now().Before(deadline) {
		if code, body = get(t, "http://"+addr+"/readyz"); code == http.StatusOK && strings.Contains(body, want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("/readyz answered %d %q, want 200 and %q within %s", code, body, want, within)
}

// sigterm signals the controller and returns how long it took to exit.
func (c *controller) sigterm() time.Duration {
	c.t.Helper()
	start := time.Now()
	if err := c.Signal(syscall.SIGTERM); err != nil {
		c.t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		c.t.Fatal("weir-controller did not exit within 10 s of SIGTERM")
	}
	if err := c.Err(); err != nil {
		c.t.Fatalf("weir-controller exited with %v after SIGTERM, want 0", err)
	}
	took := time.Since(start)
	c.t.Logf("exited %s after SIGTERM", took)
	return took
}

// quickLease makes take-over fast enough for a test.
var quickLease = []string{"--lease-duration", "3s", "--lease-renew-interval", "500ms", "--lease-renew-deadline", "2s"}

func controllerArgs(owner string) []string {
	return append([]string{"--launcher", "external", "--lease-owner", owner, "--health-addr", "127.0.0.1:0", "--poll-interval", "200ms"}, quickLease...)
}

func TestControllerLeadsAndReleasesTheLeaseOnSIGTERM(t *testing.T) {
	cfg := awstest.Config(t)
	stack := resourcestest.ForTest(t, cfg)
	env := stack.Env()
	lease, err := dynamo.NewLease(dynamo.NewClient(cfg), dynamo.LeaseConfig{Table: env[resources.EnvLeaseTable], Name: "controller", Owner: "test-reader"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	a := start(t, env, controllerArgs("ctl-a")...)
	addr := a.healthAddr()
	if code, body := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	waitReady(t, addr, "leader", 10*time.Second)
	rec, err := lease.Record(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rec == nil || rec.Owner != "ctl-a" || rec.Released || rec.Fence < 1 {
		t.Fatalf("lease record %+v, want held by ctl-a", rec)
	}

	if took := a.sigterm(); took > time.Second {
		t.Errorf("weir-controller took %s to exit after SIGTERM, want at most 1 s", took)
	}
	rec, err = lease.Record(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rec == nil || rec.Owner != "ctl-a" || !rec.Released {
		t.Fatalf("lease record after SIGTERM %+v, want released by ctl-a", rec)
	}
	if !strings.Contains(a.Out.String(), `"msg":"weir-controller stopped"`) {
		t.Errorf("no stop line in the log:\n%s", a.Out.String())
	}
}

func TestAStandbyIsReadyAndTakesOverOnSIGTERM(t *testing.T) {
	cfg := awstest.Config(t)
	stack := resourcestest.ForTest(t, cfg)
	env := stack.Env()

	a := start(t, env, controllerArgs("ctl-a")...)
	addrA := a.healthAddr()
	waitReady(t, addrA, "leader", 10*time.Second)
	b := start(t, env, controllerArgs("ctl-b")...)
	addrB := b.healthAddr()
	waitReady(t, addrB, "standby", 10*time.Second)

	a.sigterm()
	// The standby re-reads the record every renew interval (500 ms) and
	// takes a released lease at once; the rest of the allowance is the
	// emulator's latency while other packages' tests load it.
	waitReady(t, addrB, "leader", 2*time.Second)
	if took := b.sigterm(); took > time.Second {
		t.Errorf("weir-controller took %s to exit after SIGTERM, want at most 1 s", took)
	}
}

func TestTheLeaderStartsWorkersThroughTheProcessLauncher(t *testing.T) {
	cfg := awstest.Config(t)
	stack := resourcestest.ForTest(t, cfg)
	env := stack.Env()
	st, err := dynamo.NewStore(dynamo.NewClient(cfg), env[resources.EnvJobsTable])
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := st.PutConfig(ctx, job.Config{
		JobID: "clicks",
		Spec: job.Spec{
			Operators:      []job.Operator{{ID: "source", Parallelism: 2, Source: true}, {ID: "sink", Parallelism: 2}},
			SlotsPerWorker: 1, Program: "demo",
		},
	}.WithDefaults()); err != nil {
		t.Fatal(err)
	}

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	stateDir, reports := t.TempDir(), t.TempDir()
	// Whatever happens, no worker outlives the test.
	t.Cleanup(func() {
		l, err := process.New(process.Options{StateDir: stateDir, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Error(err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.Stop(ctx, "clicks", 0); err != nil {
			t.Errorf("stop the workers: %v", err)
		}
	})
	args := append([]string{
		"--launcher", "process", "--process-state-dir", stateDir,
		"--process-command", self + " " + workerFlag + " " + reports + "/{{.JobID}}-{{.RunID}}-{{.WorkerID}}.json",
		"--lease-owner", "ctl-a", "--health-addr", "127.0.0.1:0", "--poll-interval", "200ms",
	}, quickLease...)
	c := start(t, env, args...)
	waitReady(t, c.healthAddr(), "leader", 10*time.Second)

	for _, w := range []string{"w-0", "w-1"} {
		path := filepath.Join(reports, "clicks-1-"+w+".json")
		var b []byte
		deadline := time.Now().Add(15 * time.Second)
		for b, err = os.ReadFile(path); err != nil; b, err = os.ReadFile(path) {
			if time.Now().After(deadline) {
				t.Fatalf("worker %s of run 1 did not start within 15 s", w)
			}
			time.Sleep(50 * time.Millisecond)
		}
		var got []string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"WEIR_JOB_ID=clicks", "WEIR_RUN_ID=1", "WEIR_WORKER_ID=" + w, "WEIR_WORKER_SLOTS=1", "WEIR_PROGRAM=demo",
			resources.EnvWorkerQueueURL + "=" + env[resources.EnvWorkerQueueURL], resources.EnvJobsTable + "=" + env[resources.EnvJobsTable],
			resources.EnvWorkerUrgentQueueURL + "=" + env[resources.EnvWorkerUrgentQueueURL],
			"AWS_ENDPOINT_URL=" + os.Getenv("AWS_ENDPOINT_URL"),
		} {
			if !slices.Contains(got, want) {
				t.Errorf("worker %s lacks %s in its environment %q", w, want, got)
			}
		}
	}

	// A controller that stops leaves its workers to the next leader.
	c.sigterm()
	l, err := process.New(process.Options{StateDir: stateDir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	running, err := l.Running("clicks")
	if err != nil {
		t.Fatal(err)
	}
	if len(running[1]) != 2 {
		t.Fatalf("workers running after the controller stopped: %v, want both of run 1", running)
	}
}

func TestBadSettingsStopStartUpBeforeAnyAWSCall(t *testing.T) {
	// Anything that connects here would be an AWS call.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			calls.Add(1)
			_ = conn.Close()
		}
	})
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })

	bin := binary(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--launcher", "ecs", "--poll-interval", "often")
	cmd.Env = []string{"AWS_ENDPOINT_URL=http://" + ln.Addr().String(), "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		resources.EnvJobsTable + "=jobs"}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitSettings {
		t.Fatalf("exit %v, want code %d:\n%s", err, exitSettings, out)
	}
	msg := string(out)
	for _, want := range []string{"WEIR_LEASE_TABLE, WEIR_WORKER_QUEUE_URL not set", "--ecs-cluster", `--poll-interval "often"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Count(msg, "weir-controller:") != 1 {
		t.Errorf("want one message:\n%s", msg)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d connections to the AWS endpoint before the settings were valid", n)
	}

	// Flags that do not parse and stray arguments are settings problems
	// too.
	for _, args := range [][]string{{"--lanucher", "process"}, {"process"}} {
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if !errors.As(err, &exit) || exit.ExitCode() != exitSettings || !strings.Contains(string(out), "see --help") {
			t.Errorf("%q: %v, want exit code %d and a pointer to --help:\n%s", args, err, exitSettings, out)
		}
	}
}

package process_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/infra/launcher"
	"github.com/weirstream/weir/infra/launcher/process"
)

// The test binary doubles as the worker program: with modeEnv set it acts
// as a worker instead of running the tests.
const (
	modeEnv      = "WEIR_PROCESSTEST_MODE"
	reportDirEnv = "WEIR_PROCESSTEST_DIR"
	childEnv     = "WEIR_PROCESSTEST_CHILD"       // "1": start a child in the same group
	ignoreEnv    = "WEIR_PROCESSTEST_IGNORE_TERM" // "1": ignore SIGTERM
)

func TestMain(m *testing.M) {
	switch os.Getenv(modeEnv) {
	case "":
		os.Exit(m.Run())
	case "worker":
		runWorker()
	case "sleep":
		sleepForever()
	default:
		fmt.Fprintln(os.Stderr, "unknown", modeEnv)
		os.Exit(2)
	}
}

// report is what a test worker writes about itself.
type report struct {
	PID      int
	ChildPID int
	Args     []string
	Env      map[string]string
}

func runWorker() {
	if os.Getenv(ignoreEnv) == "1" {
		signal.Ignore(syscall.SIGTERM)
	}
	r := report{PID: os.Getpid(), Args: os.Args[1:], Env: map[string]string{}}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		r.Env[k] = v
	}
	if os.Getenv(childEnv) == "1" {
		// The child inherits the group (no Setpgid) and, like a worker's
		// helper process, ignores SIGTERM only if told to.
		c := exec.Command(os.Args[0])
		c.Env = append(os.Environ(), modeEnv+"=sleep")
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "start child:", err)
			os.Exit(3)
		}
		r.ChildPID = c.Process.Pid
	}
	b, _ := json.Marshal(r)
	path := filepath.Join(os.Getenv(reportDirEnv), os.Getenv(launcher.EnvWorkerID)+"-"+strconv.Itoa(os.Getpid())+".json")
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		os.Exit(4)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		os.Exit(4)
	}
	sleepForever()
}

func sleepForever() {
	if os.Getenv(ignoreEnv) == "1" {
		signal.Ignore(syscall.SIGTERM)
	}
	for {
		time.Sleep(time.Hour)
	}
}

type fixture struct {
	t       *testing.T
	state   string
	reports string
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, state: t.TempDir(), reports: t.TempDir()}
	return f
}

// launcher returns a launcher on the fixture's state directory; extra
// environment entries configure the test worker.
func (f *fixture) launcher(extra ...string) *process.Launcher {
	f.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		f.t.Fatal(err)
	}
	l, err := process.New(process.Options{
		Command:  []string{exe, "--job={{.JobID}}", "--run={{.RunID}}", "--worker={{.WorkerID}}"},
		StateDir: f.state,
		Environ: []string{
			"AWS_REGION=eu-west-1", "AWS_ENDPOINT_URL=http://127.0.0.1:1",
			"WEIR_WORKER_QUEUE_URL=http://queue", "WEIR_WORKER_URGENT_QUEUE_URL=http://urgent", "WEIR_JOBS_TABLE=jobs",
			"HOME=/nowhere", "SECRET=not-for-workers",
		},
		Env:   append([]string{modeEnv + "=worker", reportDirEnv + "=" + f.reports}, extra...),
		Grace: 300 * time.Millisecond,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	// No worker outlives the test, whatever it did.
	f.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, id := range []job.ID{"clicks", "views"} {
			if err := l.Stop(ctx, id, 0); err != nil {
				f.t.Errorf("cleanup stop %s: %v", id, err)
			}
		}
	})
	return l
}

// waitReports waits until n workers have reported, and returns them by
// worker id (several per id when a worker was started again).
func (f *fixture) waitReports(n int) map[string][]report {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		paths, _ := filepath.Glob(filepath.Join(f.reports, "*.json"))
		if len(paths) >= n {
			out := map[string][]report{}
			for _, p := range paths {
				b, err := os.ReadFile(p)
				if err != nil {
					f.t.Fatal(err)
				}
				var r report
				if err := json.Unmarshal(b, &r); err != nil {
					f.t.Fatal(err)
				}
				out[r.Env[launcher.EnvWorkerID]] = append(out[r.Env[launcher.EnvWorkerID]], r)
			}
			return out
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%d of %d workers reported within 10 s", len(paths), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gone says whether a process has ended (a zombie has ended too).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return fields[0] == "Z" || fields[0] == "X"
}

func request(id job.ID, run int64, workers ...string) fleet.Request {
	return fleet.Request{JobID: id, RunID: run, Workers: workers, SlotsPerWorker: 2, Program: "s3://bucket/pipeline.wasm"}
}

func TestStartGivesEachWorkerItsIdentity(t *testing.T) {
	f := newFixture(t)
	l := f.launcher()
	ctx := t.Context()
	if err := l.Start(ctx, request("clicks", 3, "w-0", "w-1")); err != nil {
		t.Fatal(err)
	}
	reps := f.waitReports(2)
	for _, w := range []string{"w-0", "w-1"} {
		r := reps[w][0]
		want := map[string]string{
			launcher.EnvJobID: "clicks", launcher.EnvRunID: "3", launcher.EnvWorkerID: w,
			launcher.EnvSlots: "2", launcher.EnvProgram: "s3://bucket/pipeline.wasm",
			"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
			launcher.EnvWorkerQueueURL: "http://queue", launcher.EnvWorkerUrgentQueueURL: "http://urgent", launcher.EnvJobsTable: "jobs",
		}
		for k, v := range want {
			if r.Env[k] != v {
				t.Errorf("worker %s: %s=%q, want %q", w, k, r.Env[k], v)
			}
		}
		for _, k := range []string{"HOME", "SECRET"} {
			if _, ok := r.Env[k]; ok {
				t.Errorf("worker %s inherited %s; only the worker queues' URLs, WEIR_JOBS_TABLE and AWS_* pass through", w, k)
			}
		}
		if args := []string{"--job=clicks", "--run=3", "--worker=" + w}; !slices.Equal(r.Args, args) {
			t.Errorf("worker %s args %q, want %q", w, r.Args, args)
		}
	}
	running, err := l.Running("clicks")
	if err != nil {
		t.Fatal(err)
	}
	if got := running[3]; len(got) != 2 {
		t.Fatalf("running workers of run 3: %v, want w-0 and w-1", running)
	}
}

func TestStartIsIdempotent(t *testing.T) {
	f := newFixture(t)
	l := f.launcher()
	ctx := t.Context()
	req := request("clicks", 1, "w-0", "w-1")
	if err := l.Start(ctx, req); err != nil {
		t.Fatal(err)
	}
	first := f.waitReports(2)
	// Again from this launcher, and from a new one on the same state
	// directory (a controller that took over).
	if err := l.Start(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := f.launcher().Start(ctx, req); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	again := f.waitReports(2)
	for w, rs := range again {
		if len(rs) != 1 || rs[0].PID != first[w][0].PID {
			t.Errorf("worker %s was started %d times; a repeated Start must leave a running worker alone", w, len(rs))
		}
	}

	// A worker that died is started again by the next Start.
	if err := syscall.Kill(first["w-1"][0].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "w-1 to die", func() bool { return gone(first["w-1"][0].PID) })
	if err := l.Start(ctx, req); err != nil {
		t.Fatal(err)
	}
	if reps := f.waitReports(3); len(reps["w-1"]) != 2 || len(reps["w-0"]) != 1 {
		t.Fatalf("after w-1 died, Start ran w-0 %d and w-1 %d times; want 1 and 2", len(reps["w-0"]), len(reps["w-1"]))
	}
}

func TestStopEndsTheWholeProcessGroup(t *testing.T) {
	f := newFixture(t)
	l := f.launcher(childEnv + "=1")
	ctx := t.Context()
	if err := l.Start(ctx, request("clicks", 1, "w-0")); err != nil {
		t.Fatal(err)
	}
	r := f.waitReports(1)["w-0"][0]
	if r.ChildPID == 0 {
		t.Fatal("the worker started no child")
	}
	if err := l.Stop(ctx, "clicks", 0); err != nil {
		t.Fatal(err)
	}
	if !gone(r.PID) || !gone(r.ChildPID) {
		t.Fatalf("after Stop: worker gone %v, its child gone %v; want both", gone(r.PID), gone(r.ChildPID))
	}
	if running, _ := l.Running("clicks"); len(running) != 0 {
		t.Fatalf("Running after Stop: %v", running)
	}
	pids, _ := filepath.Glob(filepath.Join(f.state, "clicks", "*.pid"))
	if len(pids) != 0 {
		t.Fatalf("pid files left after Stop: %v", pids)
	}
	// Stopping what is not running is not an error.
	if err := l.Stop(ctx, "clicks", 0); err != nil {
		t.Fatal(err)
	}
}

func TestStopKillsWorkersThatIgnoreSIGTERM(t *testing.T) {
	f := newFixture(t)
	l := f.launcher(childEnv+"=1", ignoreEnv+"=1")
	ctx := t.Context()
	if err := l.Start(ctx, request("clicks", 1, "w-0")); err != nil {
		t.Fatal(err)
	}
	r := f.waitReports(1)["w-0"][0]
	start := time.Now()
	if err := l.Stop(ctx, "clicks", 1); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("Stop took %s; want the 300 ms grace, then SIGKILL", took)
	}
	if !gone(r.PID) || !gone(r.ChildPID) {
		t.Fatalf("after Stop: worker gone %v, its child gone %v; want both", gone(r.PID), gone(r.ChildPID))
	}
}

func TestStopHonoursTheRunBoundAndTheJob(t *testing.T) {
	f := newFixture(t)
	l := f.launcher()
	ctx := t.Context()
	for _, req := range []fleet.Request{request("clicks", 1, "w-0"), request("clicks", 2, "w-0"), request("clicks", 3, "w-0"), request("views", 1, "w-0")} {
		if err := l.Start(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	f.waitReports(4)
	if err := l.Stop(ctx, "clicks", 2); err != nil {
		t.Fatal(err)
	}
	clicks, _ := l.Running("clicks")
	views, _ := l.Running("views")
	if len(clicks) != 1 || len(clicks[3]) != 1 || len(views[1]) != 1 {
		t.Fatalf("after Stop(clicks, 2): clicks %v, views %v; want run 3 of clicks and run 1 of views left", clicks, views)
	}
}

func TestANewLauncherStopsWorkersOfADeadOne(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	if err := f.launcher().Start(ctx, request("clicks", 1, "w-0", "w-1")); err != nil {
		t.Fatal(err)
	}
	reps := f.waitReports(2)
	next := f.launcher()
	if running, _ := next.Running("clicks"); len(running[1]) != 2 {
		t.Fatalf("a new launcher sees %v; want both workers of run 1", running)
	}
	if err := next.Stop(ctx, "clicks", 0); err != nil {
		t.Fatal(err)
	}
	for w, rs := range reps {
		waitFor(t, "worker "+w+" to be reaped", func() bool { return gone(rs[0].PID) })
	}
}

func TestAReusedPidIsNotTakenForAWorker(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("start times are checked on Linux only")
	}
	f := newFixture(t)
	l := f.launcher()
	ctx := t.Context()

	// A process the launcher did not start, in its own group, whose pid a
	// stale pid file names with another start time.
	exe, _ := os.Executable()
	other := exec.Command(exe)
	other.Env = append(os.Environ(), modeEnv+"=sleep")
	other.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	dir := filepath.Join(f.state, "clicks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf(`{"job_id":"clicks","run_id":1,"worker_id":"w-0","pid":%d,"start":"1","command":["x"]}`, other.Process.Pid)
	if err := os.WriteFile(filepath.Join(dir, "run-1.worker-w-0.pid"), []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}

	if err := l.Start(ctx, request("clicks", 1, "w-0")); err != nil {
		t.Fatal(err)
	}
	reps := f.waitReports(1)
	if reps["w-0"][0].PID == other.Process.Pid {
		t.Fatal("the worker reports the other process's pid")
	}
	if err := l.Stop(ctx, "clicks", 0); err != nil {
		t.Fatal(err)
	}
	if gone(other.Process.Pid) {
		t.Fatal("Stop killed a process whose pid a stale pid file named")
	}
	if !gone(reps["w-0"][0].PID) {
		t.Fatal("Stop left the worker running")
	}
}

func TestBadRequestsAndOptions(t *testing.T) {
	f := newFixture(t)
	l := f.launcher()
	ctx := t.Context()
	for name, req := range map[string]fleet.Request{
		"bad job id":     request("-x", 1, "w-0"),
		"run 0":          request("clicks", 0, "w-0"),
		"no workers":     request("clicks", 1),
		"duplicate ids":  request("clicks", 1, "w-0", "w-0"),
		"no program":     {JobID: "clicks", RunID: 1, Workers: []string{"w-0"}, SlotsPerWorker: 1},
		"no slots":       {JobID: "clicks", RunID: 1, Workers: []string{"w-0"}, Program: "p"},
		"empty worker":   request("clicks", 1, ""),
		"bad job id too": request("a/b", 1, "w-0"),
	} {
		if err := l.Start(ctx, req); err == nil {
			t.Errorf("%s: Start succeeded", name)
		}
	}
	if err := l.Stop(ctx, "clicks", -1); err == nil {
		t.Error("Stop with a negative run succeeded")
	}
	for name, o := range map[string]process.Options{
		"no state dir":     {},
		"unknown field":    {StateDir: t.TempDir(), Command: []string{"simworker", "{{.Nope}}"}},
		"bad template":     {StateDir: t.TempDir(), Command: []string{"simworker", "{{"}},
		"negative grace":   {StateDir: t.TempDir(), Grace: -time.Second},
		"bad env entry":    {StateDir: t.TempDir(), Env: []string{"NOEQUALS"}},
		"empty program":    {StateDir: t.TempDir(), Command: []string{""}},
		"program template": {StateDir: t.TempDir(), Command: []string{"{{.Program}}x", "{{.Slots}}"}},
	} {
		_, err := process.New(o)
		if (err == nil) != (name == "program template") {
			t.Errorf("%s: New returned %v", name, err)
		}
	}
	nowhere, err := process.New(process.Options{StateDir: t.TempDir(), Command: []string{"weir-no-such-worker-program"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := nowhere.Start(ctx, request("clicks", 1, "w-0")); err == nil || !strings.Contains(err.Error(), "PATH") {
		t.Fatalf("Start with a missing program: %v; want an error that says to fix the command or PATH", err)
	}
}

func TestStartAndStopHonourTheContext(t *testing.T) {
	f := newFixture(t)
	l := f.launcher()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := l.Start(ctx, request("clicks", 1, "w-0")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start on a cancelled context: %v", err)
	}
	if running, _ := l.Running("clicks"); len(running) != 0 {
		t.Fatalf("Start on a cancelled context started %v", running)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLaunchersOfDifferentControllersNeverStartAWorkerTwice(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	req := request("clicks", 1, "w-0", "w-1", "w-2")
	// Four controllers' launchers on one state directory, all at once.
	ls := []*process.Launcher{f.launcher(), f.launcher(), f.launcher(), f.launcher()}
	errs := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errs <- l.Start(ctx, req) }()
	}
	for range ls {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	for w, rs := range f.waitReports(3) {
		if len(rs) != 1 {
			t.Errorf("worker %s was started %d times", w, len(rs))
		}
	}
}

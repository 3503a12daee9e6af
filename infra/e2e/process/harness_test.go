package process

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/launcher/process"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/resources/resourcestest"
	"github.com/weirstream/weir/internal/proctest"
)

// workerMode makes the test binary the workers' command: it picks the
// simulator's flags for the worker from files the test wrote, then
// replaces itself with the simulator (same pid, so the launcher's pid file
// names the simulator).
//
//	<test binary> -e2e-worker FLAGS_DIR SIMWORKER
const workerMode = "-e2e-worker"

// heartbeatInterval is the workers' (the SDK's minimum); heartbeatTimeout
// the controllers'.
const (
	heartbeatInterval = time.Second
	heartbeatTimeout  = 3 * time.Second
)

var bins struct {
	dir        string
	controller string
	simworker  string
}

func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == workerMode {
		execWorker(os.Args[2], os.Args[3])
		return
	}
	// The tests wait on processes and the emulator far more than they
	// compute: run five at a time unless -test.parallel says otherwise
	// (its default is one per CPU). More keep the emulator, which answers
	// one request at a time, so busy that the controllers' 2 s lease
	// renewals time out.
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", "5")
	}
	code := m.Run()
	if bins.dir != "" {
		_ = os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// execWorker execs the simulator with the flags of the most specific file
// of dir that names the worker: JOB.run-N.WORKER.flags, JOB.run-N.flags,
// then JOB.flags (whitespace-separated); none means no flags.
func execWorker(dir, simworker string) {
	jobID, runID, workerID := os.Getenv("WEIR_JOB_ID"), os.Getenv("WEIR_RUN_ID"), os.Getenv("WEIR_WORKER_ID")
	args := []string{simworker}
	for _, name := range []string{
		fmt.Sprintf("%s.run-%s.%s.flags", jobID, runID, workerID),
		fmt.Sprintf("%s.run-%s.flags", jobID, runID),
		jobID + ".flags",
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil {
			args = append(args, strings.Fields(string(b))...)
			break
		}
	}
	env := append(os.Environ(), "WEIR_HEARTBEAT_INTERVAL="+heartbeatInterval.String())
	err := syscall.Exec(simworker, args, env)
	fmt.Fprintf(os.Stderr, "e2e worker: exec %s: %v\n", simworker, err)
	os.Exit(3)
}

// buildOnce builds the controller and the simulator once per package run.
var buildOnce = sync.OnceValue(func() error {
	dir, err := os.MkdirTemp("", "weir-e2e-bin-")
	if err != nil {
		return err
	}
	bins.dir = dir
	built, err := proctest.Build(dir, "github.com/weirstream/weir/cmd/weir-controller", "github.com/weirstream/weir/cmd/simworker")
	if err != nil {
		return err
	}
	bins.controller, bins.simworker = built[0], built[1]
	return nil
})

// stack is one fresh set of the template's tables and queues, with the
// controllers and workers of one test on it.
type stack struct {
	t        *testing.T
	env      map[string]string
	db       *dynamodb.Client
	store    *dynamo.Store
	lease    *dynamo.Lease
	stateDir string // the process launcher's pid files and worker logs
	flagsDir string // the simulator's flags per job, run and worker
	ctls     []*controller
}

// newStack makes the resources and registers, to run before they are
// deleted, the end of every process the test started and the check that
// none is left.
func newStack(t *testing.T) *stack {
	t.Helper()
	cfg := awstest.Config(t)
	began := time.Now()
	if err := buildOnce(); err != nil {
		t.Fatal(err)
	}
	built := time.Now()
	rs := resourcestest.ForTest(t, cfg)
	t.Logf("binaries ready after %s, the stack's resources %s later", built.Sub(began).Round(time.Millisecond), time.Since(built).Round(time.Millisecond))
	db := dynamo.NewClient(cfg)
	env := rs.Env()
	st, err := dynamo.NewStore(db, env[resources.EnvJobsTable])
	if err != nil {
		t.Fatal(err)
	}
	lease, err := dynamo.NewLease(db, dynamo.LeaseConfig{Table: env[resources.EnvLeaseTable], Name: "controller", Owner: "e2e-reader"})
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, env: env, db: db, store: st, lease: lease, stateDir: t.TempDir(), flagsDir: t.TempDir()}
	t.Cleanup(s.cleanup)
	return s
}

// cleanup kills the controllers, stops every worker through a launcher on
// the same state directory, and fails the test if any process of the
// stack is still alive.
func (s *stack) cleanup() {
	t := s.t
	began := time.Now()
	defer func() { t.Logf("processes of the stack ended in %s", time.Since(began).Round(time.Millisecond)) }()
	for _, c := range s.ctls {
		c.kill()
		if strings.Contains(c.Out.String(), "WARNING: DATA RACE") {
			t.Errorf("%s reported a data race", c.name)
		}
		if t.Failed() {
			t.Logf("log of %s:\n%s", c.name, c.Out.String())
		}
	}
	l, err := process.New(process.Options{StateDir: s.stateDir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Error(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, id := range s.jobDirs() {
		if s.workersRaced(id) {
			t.Errorf("a worker of job %s reported a data race", id)
		}
		if t.Failed() {
			s.logWorkers(id)
		}
		if err := l.Stop(ctx, id, 0); err != nil {
			t.Errorf("stop the workers of %s: %v", id, err)
		}
	}
	// Whatever the pid files say, no process that runs on this stack may
	// be left: its environment names the stack's table.
	if left := s.processes(); len(left) > 0 {
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Errorf("processes left behind on the stack: %v", left)
	}
}

// on returns the stack as seen from test t (a subtest sharing it).
func (s *stack) on(t *testing.T) *stack {
	c := *s
	c.t = t
	return &c
}

func (s *stack) jobDirs() []job.ID {
	entries, _ := os.ReadDir(s.stateDir)
	var ids []job.ID
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, job.ID(e.Name()))
		}
	}
	return ids
}

func (s *stack) workersRaced(id job.ID) bool {
	paths, _ := filepath.Glob(filepath.Join(s.stateDir, string(id), "*.log"))
	for _, p := range paths {
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("WARNING: DATA RACE")) {
			return true
		}
	}
	return false
}

func (s *stack) logWorkers(id job.ID) {
	paths, _ := filepath.Glob(filepath.Join(s.stateDir, string(id), "*.log"))
	for _, p := range paths {
		b, _ := os.ReadFile(p)
		s.t.Logf("log of worker %s/%s:\n%s", id, filepath.Base(p), b)
	}
}

// processes lists the live processes whose environment names this
// stack's jobs table.
func (s *stack) processes() []int {
	want := []byte(resources.EnvJobsTable + "=" + s.env[resources.EnvJobsTable] + "\x00")
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(b, want) {
			continue
		}
		if stat, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// controllerOptions are what differs between the tests' controllers.
type controllerOptions struct {
	lease []string // lease timing flags
}

// quickLease: a standby takes over 3 s after the last renewal it saw.
var quickLease = []string{"--lease-duration", "3s", "--lease-renew-interval", "500ms", "--lease-renew-deadline", "2s"}

const quickLeaseDuration = 3 * time.Second

// startController starts weir-controller on the stack with the process
// launcher running the simulator.
func (s *stack) startController(name string, o controllerOptions) *controller {
	s.t.Helper()
	if o.lease == nil {
		o.lease = quickLease
	}
	self, err := os.Executable()
	if err != nil {
		s.t.Fatal(err)
	}
	args := append([]string{
		"--launcher", "process", "--process-state-dir", s.stateDir,
		"--process-command", strings.Join([]string{self, workerMode, s.flagsDir, bins.simworker}, " "),
		"--process-grace", "2s",
		"--lease-owner", name, "--health-addr", "127.0.0.1:0", "--poll-interval", "500ms",
		"--heartbeat-timeout", heartbeatTimeout.String(),
	}, o.lease...)
	cmd := exec.Command(bins.controller, args...)
	cmd.Env = os.Environ()
	for _, k := range slices.Sorted(maps.Keys(s.env)) {
		cmd.Env = append(cmd.Env, k+"="+s.env[k])
	}
	p, err := proctest.Start(cmd)
	if err != nil {
		s.t.Fatal(err)
	}
	c := &controller{t: s.t, name: name, Process: p}
	s.ctls = append(s.ctls, c)
	c.addr = c.healthAddr()
	return c
}

// controller is one weir-controller process.
type controller struct {
	*proctest.Process
	t    *testing.T
	name string
	addr string
}

// kill ends the controller's process group (not its workers, which run in
// groups of their own) and waits for it.
func (c *controller) kill() { c.Kill() }

func (c *controller) signal(sig syscall.Signal) {
	c.t.Helper()
	if err := c.Signal(sig); err != nil {
		c.t.Fatalf("signal %s to %s: %v", sig, c.name, err)
	}
}

// logLine is the part of the controller's JSON log lines the tests read.
type logLine struct {
	Time       time.Time `json:"time"`
	Msg        string    `json:"msg"`
	Job        string    `json:"job"`
	From       string    `json:"from"`
	To         string    `json:"to"`
	HealthAddr string    `json:"health_addr"`
	Err        string    `json:"err"`
	Slots      int       `json:"slots"`
}

func (c *controller) lines() []logLine {
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(c.Out.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// healthAddr waits for the start-up line and returns the health address.
func (c *controller) healthAddr() string {
	c.t.Helper()
	var addr string
	waitFor(c.t, 20*time.Second, c.name+" logs its start", func() (bool, string) {
		select {
		case <-c.Done():
			c.t.Fatalf("%s exited during start-up (%v):\n%s", c.name, c.Err(), c.Out.String())
		default:
		}
		for _, l := range c.lines() {
			if l.Msg == "weir-controller starting" {
				addr = l.HealthAddr
				return true, ""
			}
		}
		return false, "no start-up line"
	})
	return addr
}

// readyz returns /readyz's status code and body.
func (c *controller) readyz() (int, string) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + c.addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// waitRole waits until /readyz names role (leader or standby).
func (c *controller) waitRole(role string, within time.Duration) {
	c.t.Helper()
	waitFor(c.t, within, c.name+" is "+role, func() (bool, string) {
		code, body := c.readyz()
		return code == http.StatusOK && strings.HasPrefix(body, role), fmt.Sprintf("/readyz %d %q", code, body)
	})
}

// waitFor polls cond every 20 ms until it holds, failing the test with
// cond's last word after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %s)", what, within, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// jobOptions shape a test job: one source and one sink, both on one
// worker unless parallelism says otherwise.
type jobOptions struct {
	// flags are the simulator's flags for every run; runFlags those of
	// one run, which win.
	flags    string
	runFlags map[int64]string
	// checkpointInterval defaults to 1 s.
	checkpointInterval time.Duration
}

// createJob writes the simulator's flags, then the job's config.
func (s *stack) createJob(id job.ID, o jobOptions) job.Config {
	s.t.Helper()
	if o.flags != "" {
		s.writeFlags(string(id)+".flags", o.flags)
	}
	for run, f := range o.runFlags {
		s.writeFlags(fmt.Sprintf("%s.run-%d.flags", id, run), f)
	}
	if o.checkpointInterval == 0 {
		o.checkpointInterval = time.Second
	}
	cfg, err := s.store.PutConfig(s.t.Context(), job.Config{
		JobID: id,
		Spec: job.Spec{
			Operators:      []job.Operator{{ID: "source", Parallelism: 1, Source: true}, {ID: "sink", Parallelism: 1}},
			SlotsPerWorker: 2, Program: "sim",
		},
		CheckpointInterval: o.checkpointInterval,
		// Short enough that a test would see a reset, long enough that
		// none happens within one.
		RestartPolicy: job.RestartPolicy{AllowedRestarts: 5, HealthyDuration: 10 * time.Minute},
	}.WithDefaults())
	if err != nil {
		s.t.Fatalf("create job %s: %v", id, err)
	}
	return cfg
}

func (s *stack) writeFlags(name, flags string) {
	if err := os.WriteFile(filepath.Join(s.flagsDir, name), []byte(flags), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// update reads the job's config, changes it and writes it back.
func (s *stack) update(id job.ID, change func(*job.Config)) {
	s.t.Helper()
	cfg, err := s.store.GetConfig(s.t.Context(), id)
	if err != nil {
		s.t.Fatal(err)
	}
	change(&cfg)
	if _, err := s.store.PutConfig(s.t.Context(), cfg); err != nil {
		s.t.Fatalf("update job %s: %v", id, err)
	}
}

func (s *stack) status(id job.ID) job.Status {
	s.t.Helper()
	st, err := s.store.GetStatus(s.t.Context(), id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.t.Fatalf("read the status of %s: %v", id, err)
	}
	return st
}

// waitState waits until the job's stored status is in state, and
// returns it.
func (s *stack) waitState(id job.ID, state job.State, within time.Duration) job.Status {
	s.t.Helper()
	var st job.Status
	waitFor(s.t, within, fmt.Sprintf("job %s reaches %s", id, state), func() (bool, string) {
		st = s.status(id)
		return st.State == state, fmt.Sprintf("state %q run %d restarts %d failure %+v", st.State, st.RunID, st.Restarts, st.Failure)
	})
	return st
}

func (s *stack) checkpoints(id job.ID) []job.Checkpoint {
	s.t.Helper()
	cps, err := s.store.ListCheckpoints(s.t.Context(), id)
	if err != nil {
		s.t.Fatalf("list the checkpoints of %s: %v", id, err)
	}
	return cps
}

// readyEpochs are the job's ready checkpoints' epochs of one run (every
// run if run is 0), in order.
func (s *stack) readyEpochs(id job.ID, run int64) []int64 {
	var out []int64
	for _, cp := range s.checkpoints(id) {
		if cp.State == job.CheckpointReady && (run == 0 || cp.RunID == run) {
			out = append(out, cp.Epoch)
		}
	}
	return out
}

// waitReadyEpochs waits until the run has at least n ready checkpoints
// above after, and returns them all.
func (s *stack) waitReadyEpochs(id job.ID, run, after int64, n int, within time.Duration) []int64 {
	s.t.Helper()
	var eps []int64
	waitFor(s.t, within, fmt.Sprintf("job %s run %d: %d ready checkpoints above epoch %d", id, run, n, after), func() (bool, string) {
		eps = s.readyEpochs(id, run)
		above := 0
		for _, e := range eps {
			if e > after {
				above++
			}
		}
		return above >= n, fmt.Sprintf("ready epochs %v, status %+v", eps, s.status(id))
	})
	return eps
}

func (s *stack) commands(id job.ID) job.Commands {
	s.t.Helper()
	c, err := s.store.GetCommands(s.t.Context(), id)
	if err != nil {
		s.t.Fatalf("read the command record of %s: %v", id, err)
	}
	return c
}

// workerPIDs reads the launcher's pid files of the job: run → worker → pid.
func (s *stack) workerPIDs(id job.ID) map[int64]map[string]int {
	s.t.Helper()
	paths, _ := filepath.Glob(filepath.Join(s.stateDir, string(id), "*.pid"))
	out := map[int64]map[string]int{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var rec struct {
			RunID    int64  `json:"run_id"`
			WorkerID string `json:"worker_id"`
			PID      int    `json:"pid"`
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			s.t.Fatalf("pid file %s: %v", p, err)
		}
		if out[rec.RunID] == nil {
			out[rec.RunID] = map[string]int{}
		}
		out[rec.RunID][rec.WorkerID] = rec.PID
	}
	return out
}

// alive says whether pid is a live (not zombie) process.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i > 0 && len(stat) > i+2 && stat[i+2] != 'Z' && stat[i+2] != 'X'
}

// item is one stored item of a job, as the test compares them.
type item struct {
	Fence   int64
	Version int64
	Raw     string
}

// items reads every item of the job (config, status, commands,
// checkpoints) strongly consistently, by sort key.
func (s *stack) items(id job.ID) map[string]item {
	s.t.Helper()
	out := map[string]item{}
	p := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 aws.String(s.env[resources.EnvJobsTable]),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: "job#" + string(id)}},
		ConsistentRead:            aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(s.t.Context())
		if err != nil {
			s.t.Fatalf("query the items of %s: %v", id, err)
		}
		for _, it := range page.Items {
			sk := it["sk"].(*types.AttributeValueMemberS).Value
			out[sk] = item{Fence: number(it["fence"]), Version: number(it["version"]), Raw: fmt.Sprint(render(it))}
		}
	}
	return out
}

func number(av types.AttributeValue) int64 {
	n, ok := av.(*types.AttributeValueMemberN)
	if !ok {
		return 0
	}
	v, _ := strconv.ParseInt(n.Value, 10, 64)
	return v
}

// render turns an item into plain values, for comparison and messages.
func render(av any) any {
	switch v := av.(type) {
	case map[string]types.AttributeValue:
		m := map[string]any{}
		for k, x := range v {
			m[k] = render(x)
		}
		return m
	case *types.AttributeValueMemberM:
		return render(v.Value)
	case *types.AttributeValueMemberL:
		l := make([]any, len(v.Value))
		for i, x := range v.Value {
			l[i] = render(x)
		}
		return l
	case *types.AttributeValueMemberS:
		return v.Value
	case *types.AttributeValueMemberN:
		return v.Value
	case *types.AttributeValueMemberBOOL:
		return v.Value
	case *types.AttributeValueMemberB:
		return fmt.Sprintf("%x", v.Value)
	case *types.AttributeValueMemberNULL:
		return nil
	default:
		return fmt.Sprintf("%T", v)
	}
}

// decodeLine decodes one JSON log line, or returns nil.
func decodeLine(line string) map[string]any {
	var m map[string]any
	if json.Unmarshal([]byte(line), &m) != nil {
		return nil
	}
	return m
}

// logged is the time of the controller's last log line with msg.
func (c *controller) logged(msg string) time.Time {
	c.t.Helper()
	var at time.Time
	for _, l := range c.lines() {
		if l.Msg == msg {
			at = l.Time
		}
	}
	if at.IsZero() {
		c.t.Fatalf("%s never logged %q", c.name, msg)
	}
	return at
}

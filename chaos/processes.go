package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weirstream/weir/chaos/checker"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/faults"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/internal/proctest"
)

// ProcessOptions run a campaign's controllers as weir-controller
// processes: kill is SIGKILL, pause SIGSTOP then SIGCONT, a graceful stop
// SIGTERM, and the AWS faults are injected inside each process
// (--test-faults, with its own seed). In the calm phase every controller
// is replaced by one without faults.
type ProcessOptions struct {
	// Binary is the weir-controller to run (proctest.Build makes one).
	Binary string
	// Output, if set, receives each controller's log once the campaign
	// is over.
	Output io.Writer
}

// processFleet starts weir-controller processes.
type processFleet struct {
	env   Env
	o     ProcessOptions
	rules string
	lease dynamo.LeaseConfig
	quiet atomic.Bool

	mu  sync.Mutex
	all []*controllerProcess
}

func newProcessFleet(env Env, o ProcessOptions, rules []faults.Rule, lease dynamo.LeaseConfig) (*processFleet, error) {
	fi, err := os.Stat(o.Binary)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("chaos: weir-controller binary %q is not an executable file: build it (go build ./cmd/weir-controller)", o.Binary)
	}
	return &processFleet{env: env, o: o, rules: faults.FormatRules(rules), lease: lease}, nil
}

func (f *processFleet) calm() bool {
	f.quiet.Store(true)
	return true
}

func (f *processFleet) start(_ context.Context, owner string, seed uint64) (controllerProc, error) {
	args := []string{
		"--launcher", "external", "--lease-owner", owner, "--health-addr", "127.0.0.1:0",
		"--poll-interval", "200ms", "--heartbeat-timeout", "4s",
		"--lease-duration", f.lease.Duration.String(), "--lease-renew-interval", f.lease.RenewInterval.String(),
		"--lease-renew-deadline", f.lease.RenewDeadline.String(),
		"--log-format", "json", "--log-level", "info",
	}
	if !f.quiet.Load() {
		args = append(args, "--test-faults", f.rules, "--test-faults-seed", strconv.FormatUint(seed, 10))
	}
	// Ended by signals, not by a context: the campaign decides how.
	cmd := exec.Command(f.o.Binary, args...)
	cmd.Env = append(os.Environ(),
		resources.EnvJobsTable+"="+f.env.JobsTable, resources.EnvLeaseTable+"="+f.env.LeaseTable,
		resources.EnvWorkerQueueURL+"="+f.env.QueueURL)
	// Should the campaign die, so do its controllers.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p, err := proctest.Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("chaos: start %s: %w", owner, err)
	}
	c := &controllerProcess{owner: owner, p: p}
	f.mu.Lock()
	f.all = append(f.all, c)
	f.mu.Unlock()
	return c, nil
}

// controllerProcess is one weir-controller process.
type controllerProcess struct {
	owner string
	p     *proctest.Process

	mu     sync.Mutex
	ended  bool      // the campaign killed or stopped it
	frozen time.Time // when the current pause began; zero while running
	pauses []window
}

type window struct{ from, to time.Time }

func (c *controllerProcess) name() string { return c.owner }

func (c *controllerProcess) kill() {
	c.mu.Lock()
	c.ended = true
	c.mu.Unlock()
	c.p.Kill()
	c.resume() // closes the pause window, if any
}

func (c *controllerProcess) pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen.IsZero() && c.p.Signal(syscall.SIGSTOP) == nil {
		c.frozen = time.Now()
	}
}

func (c *controllerProcess) resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen.IsZero() {
		return
	}
	_ = c.p.Signal(syscall.SIGCONT)
	c.pauses = append(c.pauses, window{c.frozen, time.Now()})
	c.frozen = time.Time{}
}

// stop sends SIGTERM and waits for the exit; a controller that has not
// exited within 20 s is killed.
func (c *controllerProcess) stop() {
	c.mu.Lock()
	c.ended = true
	c.mu.Unlock()
	c.resume()
	_ = c.p.Signal(syscall.SIGTERM)
	select {
	case <-c.p.Done():
	case <-time.After(20 * time.Second):
		c.p.Kill()
	}
}

func (c *controllerProcess) faults() []faults.Count {
	counts := map[faults.Count]int{}
	for _, l := range c.lines() {
		if l.Msg == "test fault injected" {
			counts[faults.Count{Kind: faults.Kind(l.Kind), Operation: l.Operation}]++
		}
	}
	out := make([]faults.Count, 0, len(counts))
	for k, n := range counts {
		k.N = n
		out = append(out, k)
	}
	return out
}

// logLine is what the campaign reads of a controller's JSON log lines.
type logLine struct {
	Time      time.Time `json:"time"`
	Msg       string    `json:"msg"`
	Job       string    `json:"job"`
	Fence     int64     `json:"fence"`
	Kind      string    `json:"kind"`
	Operation string    `json:"operation"`
}

func (c *controllerProcess) lines() []logLine {
	var out []logLine
	sc := bufio.NewScanner(bytes.NewReader(c.p.Out.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// effects are the log lines of a job loop that report something it did
// (a write that took effect), not something it saw.
var effects = map[string]bool{
	"state transition": true, "run scheduled": true, "checkpoint committing": true, "checkpoint ready": true,
	"final checkpoint ready": true, "job at rest; parked": true, "old checkpoints cleaned up": true,
}

// check records, once every controller has ended, what only the processes
// show: a controller that exited unasked, a data race one reported, and
// two controllers running one job at once. A job's tenure under a fence
// runs from its first log line to its last effect; a tenure may not
// report an effect after a later fence's tenure of the same job began,
// unless its controller was frozen (SIGSTOP) meanwhile: a frozen process
// learns it was deposed only once it runs again, and its writes are
// refused (the checker's stale_write). It returns how many overlaps a
// pause explains.
func (f *processFleet) check(ck *checker.Checker, lease time.Duration) (excused int) {
	f.mu.Lock()
	all := slices.Clone(f.all)
	f.mu.Unlock()
	type tenure struct {
		c                 *controllerProcess
		fence             int64
		first, lastEffect time.Time
	}
	byJob := map[string]map[int64]*tenure{}
	for _, c := range all {
		c.mu.Lock()
		ended := c.ended
		c.mu.Unlock()
		if !ended && c.p.Exited() {
			ck.Add("controller_exited", "", fmt.Sprintf("%s exited on its own: %v", c.owner, c.p.Err()), tail(c.p.Out.String(), 5)...)
		}
		if bytes.Contains(c.p.Out.Bytes(), []byte("WARNING: DATA RACE")) {
			ck.Add("controller_data_race", "", c.owner+" reported a data race", tail(c.p.Out.String(), 40)...)
		}
		for _, l := range c.lines() {
			if l.Job == "" || l.Fence == 0 {
				continue
			}
			if byJob[l.Job] == nil {
				byJob[l.Job] = map[int64]*tenure{}
			}
			t := byJob[l.Job][l.Fence]
			if t == nil {
				t = &tenure{c: c, fence: l.Fence, first: l.Time}
				byJob[l.Job][l.Fence] = t
			}
			if effects[l.Msg] && l.Time.After(t.lastEffect) {
				t.lastEffect = l.Time
			}
		}
	}
	for job, tenures := range byJob {
		for _, a := range tenures {
			for _, b := range tenures {
				if b.fence <= a.fence || a.lastEffect.IsZero() || !a.lastEffect.After(b.first) {
					continue
				}
				if a.c.frozenDuring(b.first.Add(-lease), a.lastEffect) {
					excused++
					continue
				}
				ck.Add("runner_overlap", job, fmt.Sprintf("%s (fence %d) reported an effect at %s, after %s (fence %d) began running the job at %s, and was not frozen meanwhile",
					a.c.owner, a.fence, a.lastEffect.Format("15:04:05.000"), b.c.owner, b.fence, b.first.Format("15:04:05.000")))
			}
		}
	}
	return excused
}

func (c *controllerProcess) frozenDuring(from, to time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.pauses, func(w window) bool { return w.from.Before(to) && w.to.After(from) })
}

// dump writes every controller's log to w.
func (f *processFleet) dump(w io.Writer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.all {
		fmt.Fprintf(w, "=== %s (pid %d)\n", c.owner, c.p.Pid())
		_, _ = w.Write(c.p.Out.Bytes())
	}
}

func tail(s string, n int) []string {
	lines := bytes.Split(bytes.TrimRight([]byte(s), "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = string(l)
	}
	return out
}

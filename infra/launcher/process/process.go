// Package process is a fleet.Launcher that runs each worker as a local
// process: the launcher of the local demo, of end-to-end tests and of a
// single-host deployment. It needs a Unix system (process groups and
// signals).
//
// Each worker runs in its own process group, so Stop ends whatever the
// worker started too. The launcher keeps one pid file per worker in a
// state directory, with the process's start time beside its pid: a
// controller that takes over from one that died reads the same directory
// and finds, and can stop, the workers its predecessor started, and a pid
// the system has since given to another process is never mistaken for a
// worker (on Linux; elsewhere the start time is not checked).
//
// One gap remains: a controller that dies between starting a process and
// writing its pid file leaves a worker no pid file names. Such a worker
// exits on its own once the command record supersedes its run.
package process

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/infra/launcher"
)

// DefaultCommand runs the worker simulator, found on PATH.
var DefaultCommand = []string{"simworker"}

// DefaultGrace is how long Stop lets a worker end after SIGTERM before it
// sends SIGKILL.
const DefaultGrace = 5 * time.Second

// killWait bounds the wait for a process group to vanish after SIGKILL,
// which the kernel carries out without the process's help.
const killWait = 2 * time.Second

// pollEvery is how often Stop looks whether signalled workers are gone.
const pollEvery = 20 * time.Millisecond

// Options configure a Launcher. The zero value of each field means its
// default; StateDir is required.
type Options struct {
	// Command is the worker program and its arguments. Each element is a
	// text/template over Worker, e.g. {"simworker", "--name={{.WorkerID}}"}.
	// Default: DefaultCommand.
	Command []string
	// StateDir holds the pid files and the workers' output (one log file
	// per worker). Every controller that may take over from another on
	// this host must be given the same directory. It is created if
	// missing.
	StateDir string
	// Environ is the environment workers inherit from; only the variables
	// launcher.PassThrough picks are passed on. Default: os.Environ().
	Environ []string
	// Env is added to every worker's environment (NAME=value) after the
	// inherited variables; the identity variables come last and win.
	Env []string
	// Dir is the workers' working directory. Default: the controller's.
	Dir string
	// Grace is how long Stop waits between SIGTERM and SIGKILL. Default
	// DefaultGrace.
	Grace time.Duration
	// Logger receives a line per worker started and stopped. Default:
	// slog.Default().
	Logger *slog.Logger
}

// Worker is what the command templates see.
type Worker struct {
	JobID    string
	RunID    int64
	WorkerID string
	Slots    int
	Program  string
}

// Launcher runs workers as local processes. It is safe for concurrent use;
// calls for different jobs never wait for each other.
type Launcher struct {
	o       Options
	command []*template.Template
	environ []string

	mu sync.Mutex
	// jobLocks serialise Start and Stop per job (a channel so that waiting
	// for one honours the context).
	jobLocks map[job.ID]chan struct{}
	// children are the processes this launcher started and has not yet
	// reaped; others are reaped by whoever adopted them.
	children map[int]bool
}

var _ fleet.Launcher = (*Launcher)(nil)

// New checks the options, parses the command templates and creates the
// state directory.
func New(o Options) (*Launcher, error) {
	if len(o.Command) == 0 {
		o.Command = DefaultCommand
	}
	if o.Environ == nil {
		o.Environ = os.Environ()
	}
	if o.Grace == 0 {
		o.Grace = DefaultGrace
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.StateDir == "" {
		return nil, errors.New("process launcher: no state directory given: name one that every controller on this host shares")
	}
	if o.Grace < 0 {
		return nil, fmt.Errorf("process launcher: grace %s is negative", o.Grace)
	}
	for _, kv := range o.Env {
		if name, _, ok := strings.Cut(kv, "="); !ok || name == "" {
			return nil, fmt.Errorf("process launcher: environment entry %q is not NAME=value", kv)
		}
	}
	l := &Launcher{
		o:        o,
		environ:  launcher.PassThrough(o.Environ),
		jobLocks: map[job.ID]chan struct{}{},
		children: map[int]bool{},
	}
	command, err := parseCommand(o.Command)
	if err != nil {
		return nil, err
	}
	l.command = command
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("process launcher: create the state directory: %w", err)
	}
	return l, nil
}

// templateFields lists what a command template may use, for errors.
const templateFields = "{{.JobID}}, {{.RunID}}, {{.WorkerID}}, {{.Slots}}, {{.Program}}"

// CheckCommand says whether command is usable as Options.Command: not
// empty, each argument a template over Worker's fields only, and a
// program name that is not empty.
func CheckCommand(command []string) error {
	_, err := parseCommand(command)
	return err
}

func parseCommand(command []string) ([]*template.Template, error) {
	if len(command) == 0 {
		return nil, errors.New("process launcher: the worker command is empty")
	}
	var ts []*template.Template
	for i, arg := range command {
		t, err := template.New(strconv.Itoa(i)).Option("missingkey=error").Parse(arg)
		if err != nil {
			return nil, fmt.Errorf("process launcher: command argument %d %q: %w (fields: %s)", i, arg, err, templateFields)
		}
		ts = append(ts, t)
	}
	// Rendering once with sample values catches unknown fields at start-up
	// rather than at a job's first launch.
	if _, err := render(ts, Worker{JobID: "job", RunID: 1, WorkerID: "w-0", Slots: 1, Program: "p"}); err != nil {
		return nil, err
	}
	return ts, nil
}

func render(ts []*template.Template, w Worker) ([]string, error) {
	argv := make([]string, len(ts))
	for i, t := range ts {
		var b bytes.Buffer
		if err := t.Execute(&b, w); err != nil {
			return nil, fmt.Errorf("process launcher: command argument %d: %w (fields: %s)", i, err, templateFields)
		}
		argv[i] = b.String()
	}
	if argv[0] == "" {
		return nil, errors.New("process launcher: the worker command's program is empty")
	}
	return argv, nil
}

// lockPoll is how often a launcher retries a job's file lock that another
// process holds.
const lockPoll = 10 * time.Millisecond

// lock takes the job's lock, or gives up when ctx ends. Two locks are
// taken: one among this launcher's calls, and a file lock in the job's
// state directory among launchers of different processes (a controller
// that took over while its predecessor, paused, still finishes a call),
// so that no two of them start the same worker.
func (l *Launcher) lock(ctx context.Context, id job.ID) (unlock func(), err error) {
	l.mu.Lock()
	ch, ok := l.jobLocks[id]
	if !ok {
		ch = make(chan struct{}, 1)
		l.jobLocks[id] = ch
	}
	l.mu.Unlock()
	select {
	case ch <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	f, err := l.lockFile(ctx, id)
	if err != nil {
		<-ch
		return nil, err
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
		<-ch
	}, nil
}

func (l *Launcher) lockFile(ctx context.Context, id job.ID) (*os.File, error) {
	if err := os.MkdirAll(l.jobDir(id), 0o755); err != nil {
		return nil, fmt.Errorf("process launcher: create the state directory of job %s: %w", id, err)
	}
	f, err := os.OpenFile(filepath.Join(l.jobDir(id), ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("process launcher: open the lock file of job %s: %w", id, err)
	}
	tick := time.NewTicker(lockPoll)
	defer tick.Stop()
	for {
		// Non-blocking, so that waiting honours ctx.
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("process launcher: lock the state directory of job %s: %w", id, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// Start launches every worker of the run that is not already running, so
// a repeated Start (after a failure, or by a controller that took over)
// starts only what is missing.
func (l *Launcher) Start(ctx context.Context, req fleet.Request) error {
	if err := launcher.CheckRequest(req); err != nil {
		return fmt.Errorf("process launcher: %w", err)
	}
	unlock, err := l.lock(ctx, req.JobID)
	if err != nil {
		return err
	}
	defer unlock()
	l.reap()
	started := 0
	for _, w := range req.Workers {
		if err := ctx.Err(); err != nil {
			return err
		}
		path := l.pidPath(req.JobID, req.RunID, w)
		if rec, err := readRecord(path); err == nil && alive(rec) {
			continue
		}
		if err := l.startWorker(req, w, path); err != nil {
			return err
		}
		started++
	}
	if started > 0 {
		l.o.Logger.Info("workers started", "job", string(req.JobID), "run_id", req.RunID, "started", started, "workers", len(req.Workers))
	}
	return nil
}

func (l *Launcher) startWorker(req fleet.Request, workerID, path string) error {
	argv, err := render(l.command, Worker{JobID: string(req.JobID), RunID: req.RunID, WorkerID: workerID, Slots: req.SlotsPerWorker, Program: req.Program})
	if err != nil {
		return err
	}
	out, err := os.OpenFile(strings.TrimSuffix(path, ".pid")+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("process launcher: open the worker's log file: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	if cmd.Err != nil {
		return fmt.Errorf("process launcher: worker command %q: %w (set the worker command, or put %s on PATH)", argv[0], cmd.Err, argv[0])
	}
	env := append([]string(nil), l.environ...)
	env = append(env, l.o.Env...)
	cmd.Env = append(env, launcher.WorkerEnv(req, workerID)...)
	cmd.Dir = l.o.Dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("process launcher: start worker %s of job %s run %d: %w", workerID, req.JobID, req.RunID, err)
	}
	pid := cmd.Process.Pid
	// The launcher reaps its children itself (see reap), so that no
	// goroutine has to wait on each of them.
	_ = cmd.Process.Release()
	l.mu.Lock()
	l.children[pid] = true
	l.mu.Unlock()
	rec := record{JobID: string(req.JobID), RunID: req.RunID, WorkerID: workerID, PID: pid, Command: argv}
	rec.Start, _ = startTime(pid)
	if err := writeRecord(path, rec); err != nil {
		// A worker no pid file names could outlive every controller.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return fmt.Errorf("process launcher: worker %s of job %s run %d was stopped again: %w", workerID, req.JobID, req.RunID, err)
	}
	return nil
}

// Stop ends the process group of every worker of the job whose run is at
// most runID (every run when runID is 0), its own and those a previous
// controller started: SIGTERM, then SIGKILL after the grace period or
// when ctx ends. It returns once they are gone and their pid files are
// removed.
func (l *Launcher) Stop(ctx context.Context, id job.ID, runID int64) error {
	if err := launcher.CheckStop(id, runID); err != nil {
		return fmt.Errorf("process launcher: %w", err)
	}
	unlock, err := l.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	// Reaping again on the way out collects workers that ended between a
	// reap and the look that found them gone.
	l.reap()
	defer l.reap()
	recs, err := l.records(id)
	if err != nil {
		return err
	}
	var live []located
	for _, r := range recs {
		if runID != 0 && r.rec.RunID > runID {
			continue
		}
		if !alive(r.rec) {
			_ = os.Remove(r.path)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return nil
	}
	signal(live, syscall.SIGTERM)
	live = l.waitGone(ctx, live, l.o.Grace)
	if len(live) > 0 {
		signal(live, syscall.SIGKILL)
		live = l.waitGone(context.WithoutCancel(ctx), live, killWait)
	}
	if len(live) > 0 {
		pids := make([]string, len(live))
		for i, r := range live {
			pids[i] = strconv.Itoa(r.rec.PID)
		}
		return fmt.Errorf("process launcher: job %s: process groups %s survived SIGKILL for %s; they may be stuck in the kernel (state D)", id, strings.Join(pids, ", "), killWait)
	}
	l.o.Logger.Info("workers stopped", "job", string(id), "up_to_run", runID)
	return nil
}

func signal(rs []located, sig syscall.Signal) {
	for _, r := range rs {
		// The negative pid names the group: the worker and all it started.
		_ = syscall.Kill(-r.rec.PID, sig)
	}
}

// waitGone waits up to d (or until ctx ends) for the groups to vanish,
// removes the pid files of those that did, and returns the rest.
func (l *Launcher) waitGone(ctx context.Context, rs []located, d time.Duration) []located {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		l.reap()
		rest := rs[:0]
		for _, r := range rs {
			if alive(r.rec) {
				rest = append(rest, r)
			} else {
				_ = os.Remove(r.path)
			}
		}
		rs = rest
		if len(rs) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return rs
		case <-deadline.C:
			return rs
		case <-tick.C:
		}
	}
}

// reap collects the exit status of this launcher's children that have
// ended, so that they do not linger as zombies. Every Start and Stop
// reaps, for all jobs: a worker that exits on its own stays a zombie only
// until the next call.
func (l *Launcher) reap() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for pid := range l.children {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if got == pid || errors.Is(err, syscall.ECHILD) {
			delete(l.children, pid)
		}
	}
}

// Running returns the workers of the job whose processes are alive, by
// run, for diagnostics and tests.
func (l *Launcher) Running(id job.ID) (map[int64][]string, error) {
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("process launcher: %w", err)
	}
	l.reap()
	recs, err := l.records(id)
	if err != nil {
		return nil, err
	}
	out := map[int64][]string{}
	for _, r := range recs {
		if alive(r.rec) {
			out[r.rec.RunID] = append(out[r.rec.RunID], r.rec.WorkerID)
		}
	}
	return out, nil
}

// record is the content of a pid file.
type record struct {
	JobID    string `json:"job_id"`
	RunID    int64  `json:"run_id"`
	WorkerID string `json:"worker_id"`
	// PID is the worker's pid, which is also its process group id.
	PID int `json:"pid"`
	// Start is the process's start time as the kernel reports it, in
	// clock ticks since boot: a pid reused by another process has another.
	Start   string   `json:"start,omitempty"`
	Command []string `json:"command"`
}

type located struct {
	path string
	rec  record
}

func (l *Launcher) jobDir(id job.ID) string { return filepath.Join(l.o.StateDir, string(id)) }

// pidPath names a worker's pid file. Job ids are safe as file names; worker
// ids are escaped.
func (l *Launcher) pidPath(id job.ID, runID int64, workerID string) string {
	return filepath.Join(l.jobDir(id), fmt.Sprintf("run-%d.worker-%s.pid", runID, url.PathEscape(workerID)))
}

func (l *Launcher) records(id job.ID) ([]located, error) {
	paths, err := filepath.Glob(filepath.Join(l.jobDir(id), "*.pid"))
	if err != nil {
		return nil, fmt.Errorf("process launcher: list pid files: %w", err)
	}
	var out []located
	for _, p := range paths {
		rec, err := readRecord(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			l.o.Logger.Warn("unreadable pid file ignored; remove it if no worker runs", "path", p, "err", err)
			continue
		}
		out = append(out, located{path: p, rec: rec})
	}
	return out, nil
}

func readRecord(path string) (record, error) {
	var rec record
	b, err := os.ReadFile(path)
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("decode %s: %w", path, err)
	}
	if rec.PID <= 1 {
		return rec, fmt.Errorf("pid file %s names pid %d", path, rec.PID)
	}
	return rec, nil
}

// writeRecord replaces the pid file at once (write and rename), so that a
// reader never sees half of it.
func writeRecord(path string, rec record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

// alive says whether the worker's process group still has members. A
// group id is not handed out again while any member lives, so once the
// leader is known to be the worker (or gone), the group is the worker's.
func alive(rec record) bool {
	if rec.Start != "" {
		now, err := startTime(rec.PID)
		if err == nil && now != rec.Start {
			return false // the pid belongs to another process now
		}
	}
	return groupAlive(rec.PID)
}

// Package memfleet is an in-memory fleet.Launcher for unit tests of the
// core. It records every call, keeps track of which runs of which jobs have
// workers, and can be told to fail the next call.
package memfleet

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/core/job"
)

// StartCall is one call to Start, failed ones included.
type StartCall struct {
	Request fleet.Request
	Err     error
}

// StopCall is one call to Stop, failed ones included.
type StopCall struct {
	JobID job.ID
	RunID int64
	Err   error
}

// Launcher is safe for concurrent use.
type Launcher struct {
	mu       sync.Mutex
	starts   []StartCall
	stops    []StopCall
	running  map[job.ID]map[int64]fleet.Request
	failNext error
	onStart  func(fleet.Request)
	onStop   func(job.ID, int64)
}

var _ fleet.Launcher = (*Launcher)(nil)

// New returns a launcher with nothing running.
func New() *Launcher {
	return &Launcher{running: map[job.ID]map[int64]fleet.Request{}}
}

// FailNext makes the next Start or Stop return err and change nothing, as
// a failed ECS call would.
func (l *Launcher) FailNext(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failNext = err
}

// OnStart sets a function called after every successful Start, outside
// the launcher's lock: a test uses it to bring up simulated workers that
// register through the inbox. It is called again when a Start is repeated.
func (l *Launcher) OnStart(fn func(fleet.Request)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onStart = fn
}

// OnStop sets a function called after every successful Stop, outside the
// launcher's lock, with the job and the run bound it was given.
func (l *Launcher) OnStop(fn func(id job.ID, runID int64)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onStop = fn
}

// Start records the call and marks the run as running. Starting a run that
// is already running changes nothing (Start is idempotent); a request a real
// launcher could not carry out is an error.
func (l *Launcher) Start(ctx context.Context, req fleet.Request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req.Workers = slices.Clone(req.Workers)
	err := check(req)
	l.mu.Lock()
	if err == nil {
		err = l.takeFailure()
	}
	l.starts = append(l.starts, StartCall{Request: req, Err: err})
	if err == nil {
		runs := l.running[req.JobID]
		if runs == nil {
			runs = map[int64]fleet.Request{}
			l.running[req.JobID] = runs
		}
		runs[req.RunID] = req
	}
	hook := l.onStart
	l.mu.Unlock()
	if err == nil && hook != nil {
		hook(req)
	}
	return err
}

func check(req fleet.Request) error {
	switch {
	case req.JobID.Validate() != nil:
		return fmt.Errorf("memfleet: start: %w", req.JobID.Validate())
	case req.RunID < 1:
		return fmt.Errorf("memfleet: start of job %s: run id %d must be at least 1", req.JobID, req.RunID)
	case len(req.Workers) == 0:
		return fmt.Errorf("memfleet: start of job %s run %d names no workers", req.JobID, req.RunID)
	case req.SlotsPerWorker < 1:
		return fmt.Errorf("memfleet: start of job %s run %d: slots per worker %d must be at least 1", req.JobID, req.RunID, req.SlotsPerWorker)
	case req.Program == "":
		return fmt.Errorf("memfleet: start of job %s run %d names no program", req.JobID, req.RunID)
	}
	seen := map[string]bool{}
	for _, w := range req.Workers {
		if w == "" || seen[w] {
			return fmt.Errorf("memfleet: start of job %s run %d: worker ids must be unique and not empty (got %q)", req.JobID, req.RunID, req.Workers)
		}
		seen[w] = true
	}
	return nil
}

// Stop records the call and tears down the job's runs up to runID (all of
// them when runID is 0). Stopping what is not running is not an error.
func (l *Launcher) Stop(ctx context.Context, id job.ID, runID int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var err error
	if runID < 0 {
		err = fmt.Errorf("memfleet: stop of job %s: run id %d is negative", id, runID)
	}
	l.mu.Lock()
	if err == nil {
		err = l.takeFailure()
	}
	l.stops = append(l.stops, StopCall{JobID: id, RunID: runID, Err: err})
	if err == nil {
		for run := range l.running[id] {
			if runID == 0 || run <= runID {
				delete(l.running[id], run)
			}
		}
		if len(l.running[id]) == 0 {
			delete(l.running, id)
		}
	}
	hook := l.onStop
	l.mu.Unlock()
	if err == nil && hook != nil {
		hook(id, runID)
	}
	return err
}

func (l *Launcher) takeFailure() error {
	err := l.failNext
	l.failNext = nil
	return err
}

// Starts returns every Start call so far, in order.
func (l *Launcher) Starts() []StartCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := slices.Clone(l.starts)
	for i := range out {
		out[i].Request.Workers = slices.Clone(out[i].Request.Workers)
	}
	return out
}

// Stops returns every Stop call so far, in order.
func (l *Launcher) Stops() []StopCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.stops)
}

// Running returns the runs of a job that have workers, lowest first.
func (l *Launcher) Running(id job.ID) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Sorted(maps.Keys(l.running[id]))
}

// Request returns the request a running run was started with.
func (l *Launcher) Request(id job.ID, runID int64) (fleet.Request, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	req, ok := l.running[id][runID]
	req.Workers = slices.Clone(req.Workers)
	return req, ok
}

// Jobs returns the jobs that have any run running, sorted.
func (l *Launcher) Jobs() []job.ID {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Sorted(maps.Keys(l.running))
}

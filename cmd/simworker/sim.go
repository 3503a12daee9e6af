package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/worker"
)

// tick is how often the simulated pipeline moves its counters on.
const tick = time.Second

// sim is a simulated pipeline: a worker.Program whose subtasks count
// records at a steady rate and misbehave as the settings say.
type sim struct {
	s     settings
	clk   clock.Clock
	log   *slog.Logger
	crash func(code int) // os.Exit in the binary

	mu        sync.Mutex
	r         *worker.Reporter
	subtasks  []worker.Subtask
	records   map[worker.Subtask]uint64
	finished  map[worker.Subtask]bool
	startedAt time.Time
	steppedAt time.Time // the last step, for tests that move a fake clock
	failed    bool
	silent    bool // stop-heartbeats-at has passed

	// The counting loop, started by Start and ended by Stop.
	cancel context.CancelFunc
	done   chan struct{}
}

func newSim(s settings, clk clock.Clock, log *slog.Logger, crash func(int)) *sim {
	return &sim{s: s, clk: clk, log: log, crash: crash,
		records: map[worker.Subtask]uint64{}, finished: map[worker.Subtask]bool{}}
}

var _ worker.Program = (*sim)(nil)

// Start starts the counting loop for the worker's subtasks.
func (m *sim) Start(_ context.Context, req worker.StartRequest, r *worker.Reporter) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.r, m.subtasks, m.startedAt = r, req.Subtasks, m.clk.Now()
	loopCtx, cancel := context.WithCancel(context.Background())
	m.cancel, m.done = cancel, make(chan struct{})
	// The ticker starts with the subtasks, so ticks fall a whole number of
	// ticks after startedAt.
	go m.loop(loopCtx, m.clk.NewTicker(tick), m.done)
	m.log.Info("simulated subtasks started", "subtasks", len(req.Subtasks), "restore_epoch", req.RestoreEpoch)
	return nil
}

func (m *sim) loop(ctx context.Context, t clock.Ticker, done chan struct{}) {
	defer close(done)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			m.step()
		}
	}
}

// step moves every running subtask on by one tick and plays the scripted
// misbehaviour whose time has come.
func (m *sim) step() {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clk.Now()
	m.steppedAt = now
	since := now.Sub(m.startedAt)
	// Counts follow from the time since the start, so a tick the loop
	// missed (a ticker drops ticks while its reader is busy) loses nothing.
	total := uint64(m.s.recordsPerSecond * since.Seconds())
	sourcesDone := true
	for _, st := range m.subtasks {
		if m.finished[st] {
			continue
		}
		n := total
		if m.isSource(st) {
			if m.s.finishAfterRecords > 0 {
				n = min(n, m.s.finishAfterRecords)
			}
			if (m.s.finishAfterRecords > 0 && n >= m.s.finishAfterRecords) || (m.s.finishAfter > 0 && since >= m.s.finishAfter) {
				m.finish(st)
			} else {
				sourcesDone = false
			}
		}
		m.records[st] = n
	}
	// Downstream subtasks drain one tick after the worker's sources end.
	if sourcesDone && m.hasSources() {
		for _, st := range m.subtasks {
			if !m.isSource(st) && !m.finished[st] {
				m.finish(st)
			}
		}
	}
	for _, st := range m.subtasks {
		n := m.records[st]
		metrics := worker.Metrics{RecordsIn: n, RecordsOut: n, BytesIn: n * m.s.recordBytes, BytesOut: n * m.s.recordBytes,
			Backpressure: m.s.backpressure, Watermark: now.Add(-m.s.watermarkLag)}
		if err := m.r.SetMetrics(st, metrics); err != nil {
			m.log.Error("cannot report metrics", "subtask", st.String(), "err", err)
		}
	}
	if m.s.failAt > 0 && since >= m.s.failAt && !m.failed {
		m.failed = true
		m.fail()
	}
	if m.s.stopHeartbeatsAt > 0 && since >= m.s.stopHeartbeatsAt && !m.silent {
		m.silent = true
		m.log.Warn("simulated hang: sending nothing from now on")
	}
	if m.s.crashAt > 0 && since >= m.s.crashAt {
		m.log.Error("simulated crash", "exit_code", m.s.crashCode)
		m.crash(m.s.crashCode)
	}
}

func (m *sim) finish(st worker.Subtask) {
	m.finished[st] = true
	if err := m.r.Finish(st); err != nil {
		m.log.Error("cannot report a finished subtask", "subtask", st.String(), "err", err)
	}
}

func (m *sim) fail() {
	if len(m.subtasks) == 0 {
		return
	}
	target := m.subtasks[0]
	if m.s.failSubtask != "" {
		target, _ = parseSubtask(m.s.failSubtask) // checked by parseFlags
	}
	cause := fmt.Errorf("simulated failure of %s after %s", target, m.s.failAt)
	err := worker.Retryable(m.s.failDomain, cause)
	if m.s.failRetry == "none" {
		err = worker.Fatal(m.s.failDomain, cause)
	}
	if ferr := m.r.Fail(target, err); ferr != nil {
		m.log.Error("cannot fail the subtask", "subtask", target.String(), "err", ferr)
	}
}

func (m *sim) isSource(st worker.Subtask) bool { return slices.Contains(m.s.sources, st.Operator) }

func (m *sim) hasSources() bool {
	return slices.ContainsFunc(m.subtasks, m.isSource)
}

// Checkpoint snapshots every subtask at once, unless told to fail or hang.
func (m *sim) Checkpoint(ctx context.Context, req worker.CheckpointRequest) ([]worker.Snapshot, error) {
	if m.s.failCheckpoint > 0 && req.Epoch >= m.s.failCheckpoint {
		return nil, fmt.Errorf("simulated failure of checkpoint %d", req.Epoch)
	}
	if m.s.hangCheckpoint > 0 && req.Epoch >= m.s.hangCheckpoint {
		m.log.Warn("simulated hang in a checkpoint", "epoch", req.Epoch)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]worker.Snapshot, 0, len(m.subtasks))
	for _, st := range m.subtasks {
		out = append(out, worker.Snapshot{Subtask: st, Bytes: int64(m.records[st] % 1_000_000),
			Metadata: fmt.Sprintf("sim://%s/%d/%s/%d", st.Operator, st.Index, "records", m.records[st])})
	}
	return out, nil
}

// Commit takes -commit-delay.
func (m *sim) Commit(ctx context.Context, epoch int64) error {
	if m.s.commitDelay <= 0 {
		return nil
	}
	t := m.clk.NewTimer(m.s.commitDelay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("commit %d: %w", epoch, ctx.Err())
	case <-t.C():
		return nil
	}
}

// Stop ends the counting loop and waits for it.
func (m *sim) Stop(ctx context.Context, mode job.StopMode) error {
	m.mu.Lock()
	cancel, done := m.cancel, m.done
	m.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		m.log.Info("simulated subtasks stopped", "mode", string(mode))
		return nil
	case <-ctx.Done():
		return errors.New("the counting loop did not end before the stop's context did")
	}
}

// ticking reports whether the counting loop's ticker is running.
func (m *sim) ticking() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cancel == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// behind reports whether the counting loop has started and not yet caught
// up with the clock: a tick is due that it has not taken.
func (m *sim) behind() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cancel == nil {
		return false
	}
	last := m.startedAt
	if m.steppedAt.After(last) {
		last = m.steppedAt
	}
	return m.clk.Since(last) >= tick
}

// silenced reports whether -stop-heartbeats-at has passed.
func (m *sim) silenced() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.silent
}

// publisher wraps the worker's publisher: once the simulated hang begins,
// envelopes are dropped, as if the worker had stopped sending.
type publisher struct {
	next worker.Publisher
	sim  *sim
}

func (p publisher) Publish(ctx context.Context, body []byte) error {
	if p.sim.silenced() {
		return nil
	}
	return p.next.Publish(ctx, body)
}

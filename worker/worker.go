package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/store"
)

// ErrSuperseded is returned by Run when the command record belongs to a
// newer run of the job: this worker's run is over. It is a clean end.
var ErrSuperseded = errors.New("run superseded by a newer run of the job")

// Publisher sends one envelope to the worker queue. *sqs.Publisher
// (infra/sqs) is one. Delivery may be repeated: duplicates are harmless.
type Publisher interface {
	Publish(ctx context.Context, body []byte) error
}

// UrgentPublisher is a Publisher with a second queue for the envelopes
// whose news the controller must act on at once: a subtask newly failed or
// a source newly finished. The controller receives that queue without
// lingering to batch, so such news is not held up behind routine
// heartbeats. The worker sends through PublishUrgent when its publisher
// has it (Connect's does when the identity names an urgent queue).
type UrgentPublisher interface {
	Publisher
	PublishUrgent(ctx context.Context, body []byte) error
}

// Commands reads a job's command record, eventually consistently; it
// returns an error wrapping store.ErrNotFound when there is none yet.
// *dynamo.Store (infra/dynamo) is one.
type Commands interface {
	GetCommands(ctx context.Context, id job.ID) (job.Commands, error)
}

// Defaults of Options.
const (
	DefaultFastRead      = 500 * time.Millisecond
	DefaultSlowRead      = 10 * time.Second
	DefaultReadWindow    = 5 * time.Second
	DefaultPendingWindow = 30 * time.Second
	DefaultSendAttempts  = 3
	DefaultSendBackoff   = 200 * time.Millisecond
	DefaultStopTimeout   = 10 * time.Second
	// MinFastRead is the fastest the command record may be read.
	MinFastRead = 250 * time.Millisecond
)

// Options tune a Worker; every zero field takes its default.
type Options struct {
	// CommittingOperators are the operators of the program that are
	// two-phase (committing) sinks: their subtasks commit epochs when the
	// command record asks, and report it.
	CommittingOperators []string
	// Linger is how long urgent news waits for more (protocol.DefaultLinger).
	Linger time.Duration
	// FastRead is the read interval while something is pending or
	// expected (DefaultFastRead, at least MinFastRead); SlowRead is the
	// ceiling the interval backs off to while nothing changes
	// (DefaultSlowRead).
	FastRead, SlowRead time.Duration
	// ReadWindow bounds the fast reads around an expected checkpoint
	// (DefaultReadWindow); PendingWindow those while a commit is awaited
	// (DefaultPendingWindow).
	ReadWindow, PendingWindow time.Duration
	// SendAttempts is how often one envelope is tried (DefaultSendAttempts),
	// SendBackoff the pause before the first retry, doubled after each
	// (DefaultSendBackoff). An envelope that still fails is dropped: the
	// next carries the same state.
	SendAttempts int
	SendBackoff  time.Duration
	// StopTimeout bounds Program.Stop when Run's context has ended
	// (DefaultStopTimeout).
	StopTimeout time.Duration
	// Clock is the real clock unless a test moves a fake one.
	Clock clock.Clock
	// Logger gets the worker's log lines (default: discarded).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.Linger, protocol.DefaultLinger)
	def(&o.FastRead, DefaultFastRead)
	def(&o.SlowRead, DefaultSlowRead)
	def(&o.ReadWindow, DefaultReadWindow)
	def(&o.PendingWindow, DefaultPendingWindow)
	def(&o.SendBackoff, DefaultSendBackoff)
	def(&o.StopTimeout, DefaultStopTimeout)
	if o.SendAttempts == 0 {
		o.SendAttempts = DefaultSendAttempts
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}

// Validate names every option that cannot work.
func (o Options) Validate() error {
	o = o.withDefaults()
	var problems []error
	if o.FastRead < MinFastRead {
		problems = append(problems, fmt.Errorf("fast read interval %s is below %s: read the command record less often", o.FastRead, MinFastRead))
	}
	if o.SlowRead < o.FastRead {
		problems = append(problems, fmt.Errorf("slow read interval %s is below the fast one %s", o.SlowRead, o.FastRead))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"linger", o.Linger}, {"read window", o.ReadWindow}, {"pending window", o.PendingWindow}, {"send back-off", o.SendBackoff}, {"stop time-out", o.StopTimeout}} {
		if d.v < 0 {
			problems = append(problems, fmt.Errorf("%s is %s: it must not be negative", d.name, d.v))
		}
	}
	if o.SendAttempts < 1 {
		problems = append(problems, fmt.Errorf("send attempts is %d: try each envelope at least once", o.SendAttempts))
	}
	for _, op := range o.CommittingOperators {
		if op == "" {
			problems = append(problems, errors.New("committing operators: an operator id is empty"))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("worker options: %w", errors.Join(problems...))
	}
	return nil
}

// Worker runs one worker of one run of a job: it reports the worker's
// whole state in an envelope every heartbeat interval (sooner when a
// subtask starts, finishes, fails, checkpoints or commits), reads the
// job's command record at an adaptive interval, and calls the Program as
// the record asks. Build it with New and call Run once.
type Worker struct {
	id         Identity
	prog       Program
	pub        Publisher
	cmds       Commands
	o          Options
	clock      clock.Clock
	log        *slog.Logger
	committing map[string]bool
	b          *protocol.Builder
	flushReq   chan chan struct{}

	// mu guards the state both loops and the Reporter touch: each
	// subtask's state (in b, read-modified-written under mu), the read
	// schedule (the sender asks it when the next checkpoint is due) and
	// when the last envelope left.
	mu        sync.Mutex
	assigned  map[Subtask]bool
	sched     *schedule
	lastFlush time.Time
	// urgentNews says the news not yet sent includes a subtask newly
	// failed or a source newly finished: the next envelope goes to the
	// urgent queue.
	urgentNews bool

	// The command loop's state. It alone writes these; started,
	// startFailed and finalEpoch are written under mu too, because the
	// send loop reads them.
	subtasks       []Subtask
	started        bool
	startFailed    bool
	lastCmds       job.Commands
	checkpointTry  int64 // newest epoch Checkpoint was called for
	checkpointDone int64 // newest epoch every subtask reported
	committedEpoch int64
	finalEpoch     int64 // a then_stop checkpoint's epoch, once taken
	stopped        bool  // Program.Stop was called
	readErrors     int
}

// New builds a worker. It checks the identity and options, so that a
// misconfigured worker fails before it sends anything.
func New(id Identity, prog Program, pub Publisher, cmds Commands, opts Options) (*Worker, error) {
	if err := id.Validate(); err != nil {
		return nil, err
	}
	id = id.withDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if prog == nil || pub == nil || cmds == nil {
		return nil, errors.New("worker: a program, a publisher and a command reader are all needed")
	}
	o := opts.withDefaults()
	b, err := protocol.NewBuilder(id.JobID, id.RunID, id.WorkerID, id.Slots,
		protocol.BuilderOptions{Heartbeat: id.HeartbeatInterval, Linger: o.Linger})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	w := &Worker{
		id: id, prog: prog, pub: pub, cmds: cmds, o: o, clock: o.Clock,
		log:        o.Logger.With("job", string(id.JobID), "run_id", id.RunID, "worker", id.WorkerID),
		committing: map[string]bool{},
		b:          b,
		flushReq:   make(chan chan struct{}),
		assigned:   map[Subtask]bool{},
		sched:      newSchedule(o.FastRead, o.SlowRead, o.ReadWindow, o.PendingWindow),
	}
	for _, op := range o.CommittingOperators {
		w.committing[op] = true
	}
	return w, nil
}

// Run sends heartbeats and follows the command record until the run ends
// for this worker: it returns nil once a stop command (or a final
// checkpoint) has been carried out and reported, ErrSuperseded when a
// newer run of the job has begun, and ctx's error when ctx ends. In every
// case the program has been stopped and every goroutine Run started has
// ended.
func (w *Worker) Run(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { w.sendLoop(runCtx) })
	defer func() {
		cancel()
		wg.Wait()
	}()
	err := w.commandLoop(runCtx)
	if ctx.Err() != nil && w.started && !w.stopped {
		// The process is going away: end the program's own work on a
		// context of its own, since ctx is already done.
		stopCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), w.o.StopTimeout)
		defer stop()
		if serr := w.prog.Stop(stopCtx, job.StopImmediate); serr != nil {
			w.log.Warn("program did not stop cleanly", "err", serr)
		}
	}
	return err
}

// update changes one assigned subtask's state under mu; urgent changes
// bring the next envelope forward.
func (w *Worker) update(s Subtask, urgent bool, f func(t *protocol.Task)) error {
	return w.updateNews(s, urgent, false, f)
}

// updateNews is update that also marks the next envelope for the urgent
// queue when the subtask newly fails, or, with finishIsNews (a source that
// ran out of input, not a stop), newly finishes.
func (w *Worker) updateNews(s Subtask, urgent, finishIsNews bool, f func(t *protocol.Task)) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.assigned[s] {
		return fmt.Errorf("subtask %s is not assigned to worker %s", s, w.id.WorkerID)
	}
	t, ok := w.b.Task(s.Operator, s.Index)
	if !ok {
		t = protocol.Task{Operator: s.Operator, Subtask: s.Index, State: protocol.Scheduled}
	}
	prev := t.State
	f(&t)
	news := t.State != prev && (t.State == protocol.Failed || finishIsNews && t.State == protocol.Finished)
	var err error
	if urgent {
		err = w.b.SetTask(w.clock.Now(), t)
	} else {
		err = w.b.SetTaskLater(t)
	}
	if err == nil && news {
		w.urgentNews = true
	}
	return err
}

func (w *Worker) updateAll(urgent bool, f func(t *protocol.Task)) {
	for _, s := range w.subtasks {
		if err := w.update(s, urgent, f); err != nil {
			w.log.Error("cannot report a subtask's state", "subtask", s.String(), "err", err)
		}
	}
}

func (w *Worker) event(ev protocol.Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Add(ev)
}

func (w *Worker) warn(err error, s ...Subtask) error {
	if err == nil {
		return errors.New("warn: the error is nil")
	}
	msg, _, _ := describeFailure(err)
	ev := protocol.Event{Kind: protocol.NonFatalError, Error: msg}
	var f *Failure
	if errors.As(err, &f) {
		ev.Domain = f.Domain
	}
	if len(s) > 0 {
		ev.Operator, ev.Subtask = s[0].Operator, s[0].Index
	}
	return w.event(ev)
}

// sendLoop sends an envelope whenever the builder says one is due.
func (w *Worker) sendLoop(ctx context.Context) {
	for {
		wait := w.untilNextSend()
		if wait <= 0 {
			w.flush(ctx)
			continue
		}
		timer := w.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-w.b.Wake(): // urgent news: the send is due sooner
			timer.Stop()
		case reply := <-w.flushReq:
			timer.Stop()
			w.flush(ctx)
			close(reply)
		case <-timer.C():
		}
	}
}

// untilNextSend is how long until the next envelope is due. A heartbeat
// that falls due while a checkpoint is expected (from a fast-read window
// before it to a quarter interval after) waits, up to a quarter interval,
// to leave with the checkpoint's completion: one send instead of two, and
// the time-out is five intervals away.
func (w *Worker) untilNextSend() time.Duration {
	due := w.b.Due()
	now := w.clock.Now()
	if due.IsZero() {
		return 0
	}
	w.mu.Lock()
	heartbeat := w.lastFlush.Add(w.id.HeartbeatInterval)
	exp, known := w.sched.expected()
	busy := w.started && !w.startFailed && w.finalEpoch == 0
	w.mu.Unlock()
	grace := w.id.HeartbeatInterval / 4
	if busy && known && due.Equal(heartbeat) && exp.Add(w.o.ReadWindow).After(due) && !exp.After(due.Add(grace)) {
		due = due.Add(grace)
	}
	return max(due.Sub(now), 0)
}

func (w *Worker) flush(ctx context.Context) {
	now := w.clock.Now()
	w.mu.Lock()
	bodies, err := w.b.Flush(now)
	w.lastFlush = now
	urgent := w.urgentNews && err == nil
	if urgent {
		w.urgentNews = false
	}
	w.mu.Unlock()
	if err != nil {
		// Flush keeps its news for the next try, a heartbeat from now (the
		// builder's due time did not move, so wait here).
		w.log.Error("cannot build an envelope; trying again after a heartbeat interval", "err", err)
		clock.Sleep(ctx, w.clock, w.id.HeartbeatInterval)
		return
	}
	publish := w.pub.Publish
	if up, ok := w.pub.(UrgentPublisher); ok && urgent {
		publish = up.PublishUrgent
	}
	for _, body := range bodies {
		w.send(ctx, publish, body)
	}
}

// send tries one envelope a few times. An envelope that cannot be sent is
// dropped: the next one carries the same state, which is what makes that
// safe.
func (w *Worker) send(ctx context.Context, publish func(context.Context, []byte) error, body []byte) {
	pause := w.o.SendBackoff
	for attempt := 1; ; attempt++ {
		err := publish(ctx, body)
		if err == nil || ctx.Err() != nil {
			return
		}
		if attempt >= w.o.SendAttempts {
			w.log.Warn("envelope not sent; the next heartbeat carries the same state", "attempts", attempt, "err", err)
			return
		}
		if !clock.Sleep(ctx, w.clock, pause) {
			return
		}
		pause *= 2
	}
}

// finalFlush has the send loop send the current state now, and waits.
func (w *Worker) finalFlush(ctx context.Context) {
	reply := make(chan struct{})
	select {
	case w.flushReq <- reply:
	case <-ctx.Done():
		return
	}
	select {
	case <-reply:
	case <-ctx.Done():
	}
}

// commandLoop reads the command record and acts on it until the run ends
// for this worker.
func (w *Worker) commandLoop(ctx context.Context) error {
	for {
		cmds, err := w.cmds.GetCommands(ctx, w.id.JobID)
		now := w.clock.Now()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, store.ErrNotFound):
			w.observe(now, job.Commands{}, true)
		case err != nil:
			w.readErrors++
			if w.readErrors == 1 || w.readErrors%10 == 0 {
				w.log.Warn("cannot read the command record; trying again", "errors", w.readErrors, "err", err)
			}
		default:
			w.readErrors = 0
			done, err := w.act(ctx, cmds)
			if done {
				return err
			}
		}
		w.mu.Lock()
		d := w.sched.next(now)
		w.mu.Unlock()
		if !clock.Sleep(ctx, w.clock, d) {
			return ctx.Err()
		}
	}
}

// act does what the record asks of this worker, level-triggered: every
// step checks what was already done, so reading the same record twice
// does nothing twice. It reports done when the run has ended for the
// worker.
func (w *Worker) act(ctx context.Context, c job.Commands) (done bool, err error) {
	switch {
	case c.RunID > w.id.RunID:
		w.log.Info("run superseded: stopping", "newer_run", c.RunID)
		if w.started {
			w.stopped = true
			if err := w.prog.Stop(ctx, job.StopImmediate); err != nil {
				w.log.Warn("program did not stop cleanly", "err", err)
			}
		}
		return true, fmt.Errorf("worker %s of run %d: the command record is of run %d: %w", w.id.WorkerID, w.id.RunID, c.RunID, ErrSuperseded)
	case c.RunID < w.id.RunID || c.Start == nil:
		w.observe(w.clock.Now(), c, true)
		return false, nil
	}
	if !w.started {
		w.start(ctx, c.Start)
	}
	if !w.startFailed {
		if c.Stop != nil && (c.Stop.Mode == job.StopGraceful || c.Stop.Mode == job.StopImmediate) {
			return true, w.stop(ctx, c.Stop.Mode)
		}
		if cp := c.Checkpoint; cp != nil && cp.Epoch > w.checkpointTry {
			w.checkpoint(ctx, *cp)
		}
		if cm := c.Commit; cm != nil && cm.Epoch > w.committedEpoch && w.hasCommitting() {
			w.commit(ctx, cm.Epoch)
		}
		if w.finalEpoch > 0 && (!w.hasCommitting() || w.committedEpoch >= w.finalEpoch) {
			return true, w.stop(ctx, job.StopCheckpoint)
		}
	}
	w.observe(w.clock.Now(), c, false)
	return false, nil
}

// observe tells the read schedule what the record said.
func (w *Worker) observe(now time.Time, c job.Commands, waiting bool) {
	o := observation{version: c.Version, waiting: waiting, interval: c.CheckpointInterval}
	if c.Checkpoint != nil {
		o.epoch = c.Checkpoint.Epoch
	}
	commitAsked := int64(0)
	if c.Commit != nil {
		commitAsked = c.Commit.Epoch
	}
	o.awaitingCommit = w.hasCommitting() && !w.startFailed && w.checkpointDone > max(w.committedEpoch, commitAsked)
	// A change that is only a new checkpoint or commit needs no extra
	// follow-up reads: awaitingCommit covers what follows a checkpoint.
	prev := w.lastCmds
	o.quiet = prev.RunID == c.RunID && sameStart(prev.Start, c.Start) && sameStop(prev.Stop, c.Stop)
	w.lastCmds = c
	w.mu.Lock()
	w.sched.observe(now, o)
	w.mu.Unlock()
}

func sameStart(a, b *job.StartCommand) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Program == b.Program && a.RestoreEpoch == b.RestoreEpoch && slices.Equal(a.Assignments, b.Assignments))
}

func sameStop(a, b *job.StopCommand) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func (w *Worker) hasCommitting() bool {
	for _, s := range w.subtasks {
		if w.committing[s.Operator] {
			return true
		}
	}
	return false
}

func (w *Worker) start(ctx context.Context, sc *job.StartCommand) {
	req := StartRequest{Program: sc.Program, RestoreEpoch: sc.RestoreEpoch}
	w.mu.Lock()
	w.started = true
	for _, a := range sc.Assignments {
		if a.WorkerID != w.id.WorkerID {
			continue
		}
		s := Subtask{Operator: a.OperatorID, Index: a.Subtask}
		if !w.assigned[s] {
			w.assigned[s] = true
			w.subtasks = append(w.subtasks, s)
		}
	}
	w.mu.Unlock()
	req.Subtasks = slices.Clone(w.subtasks)
	w.updateAll(false, func(*protocol.Task) {}) // each one scheduled
	w.log.Info("starting subtasks", "subtasks", len(req.Subtasks), "restore_epoch", req.RestoreEpoch)
	if err := w.prog.Start(ctx, req, &Reporter{w: w}); err != nil {
		w.mu.Lock()
		w.startFailed = true
		w.mu.Unlock()
		w.log.Error("program did not start", "err", err)
		w.updateAll(true, failWith(err))
		return
	}
	w.updateAll(true, func(t *protocol.Task) {
		if t.State == protocol.Scheduled {
			t.State = protocol.Running
		}
	})
}

func (w *Worker) checkpoint(ctx context.Context, cp job.CheckpointCommand) {
	w.checkpointTry = cp.Epoch
	snaps, err := w.prog.Checkpoint(ctx, CheckpointRequest{Epoch: cp.Epoch, MinEpoch: cp.MinEpoch, ThenStop: cp.ThenStop})
	if err != nil {
		w.log.Warn("checkpoint failed", "epoch", cp.Epoch, "err", err)
		_ = w.warn(fmt.Errorf("checkpoint %d: %w", cp.Epoch, err))
		return
	}
	reported := map[Subtask]bool{}
	for _, sn := range snaps {
		meta := sn.Metadata
		if len(meta) > protocol.MaxMetadataBytes {
			w.log.Error("checkpoint metadata too long; not reported", "subtask", sn.Subtask.String(), "bytes", len(meta))
			continue
		}
		err := w.update(sn.Subtask, true, func(t *protocol.Task) {
			t.Checkpointed, t.CheckpointBytes, t.CheckpointMetadata = cp.Epoch, max(sn.Bytes, 0), meta
		})
		if err != nil {
			w.log.Error("cannot report a checkpoint", "subtask", sn.Subtask.String(), "epoch", cp.Epoch, "err", err)
			continue
		}
		reported[sn.Subtask] = true
	}
	if len(reported) < len(w.subtasks) {
		w.log.Warn("checkpoint left subtasks out; it will time out", "epoch", cp.Epoch, "reported", len(reported), "subtasks", len(w.subtasks))
		return
	}
	w.checkpointDone = cp.Epoch
	if cp.ThenStop {
		w.mu.Lock()
		w.finalEpoch = cp.Epoch
		w.mu.Unlock()
	}
}

func (w *Worker) commit(ctx context.Context, epoch int64) {
	if err := w.prog.Commit(ctx, epoch); err != nil {
		w.log.Warn("commit failed; trying again", "epoch", epoch, "err", err)
		_ = w.warn(fmt.Errorf("commit %d: %w", epoch, err))
		return
	}
	w.committedEpoch = epoch
	urgent := epoch == w.finalEpoch || !w.commitCanWait()
	for _, s := range w.subtasks {
		if !w.committing[s.Operator] {
			continue
		}
		if err := w.update(s, urgent, func(t *protocol.Task) { t.Committed = max(t.Committed, epoch) }); err != nil {
			w.log.Error("cannot report a commit", "subtask", s.String(), "epoch", epoch, "err", err)
		}
	}
}

// commitCanWait reports whether a commit acknowledgement can ride with the
// next heartbeat: the controller only needs it before the next checkpoint
// starts, and the sink has committed already, so when the next heartbeat
// leaves well before that checkpoint is expected, sending early buys
// nothing.
func (w *Worker) commitCanWait() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	exp, known := w.sched.expected()
	if !known {
		return false
	}
	hb := w.id.HeartbeatInterval
	latest := w.lastFlush.Add(hb + hb/4) // a heartbeat may wait that long (untilNextSend)
	return latest.Add(max(2*time.Second, hb/10)).Before(exp)
}

func (w *Worker) stop(ctx context.Context, mode job.StopMode) error {
	w.log.Info("stopping", "mode", string(mode))
	w.stopped = true
	if err := w.prog.Stop(ctx, mode); err != nil {
		w.log.Warn("program did not stop cleanly", "mode", string(mode), "err", err)
		_ = w.warn(fmt.Errorf("stop (%s): %w", mode, err))
	}
	w.updateAll(true, finish)
	w.finalFlush(ctx)
	return nil
}

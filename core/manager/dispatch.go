package manager

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/inbox"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/state"
	"github.com/weirstream/weir/core/telemetry"
)

// receiveLoop takes worker messages from the inbox and puts each in its
// job's mailbox, which never blocks: a slow or stuck job cannot hold up
// the messages of any other. Malformed messages and unknown protocol
// versions are rejected for the dead-letter queue with one log line;
// messages for jobs this tenure does not run are acknowledged and dropped
// with a log line (they can only be from runs that have ended).
func (t *tenure) receiveLoop(ctx context.Context) error {
	// Until the first poll, a message could not be told from one of a job
	// at rest.
	select {
	case <-ctx.Done():
		return nil
	case <-t.polled:
	}
	backoff := time.Duration(0)
	for {
		ds, err := t.d.Inbox.Receive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
			t.log.Warn("receiving worker messages failed; will retry", "retry_in", backoff.String(), "err", err)
			if !t.sleep(ctx, backoff) {
				return nil
			}
			continue
		}
		backoff = 0
		t.dispatch(ctx, ds)
	}
}

// dispatch decodes a batch and hands each envelope to its job.
func (t *tenure) dispatch(ctx context.Context, ds []inbox.Delivery) {
	var rejects, releases []inbox.Delivery
	dropped := 0
	defer func() {
		tel := t.d.Telemetry
		tel.WorkerMessages(telemetry.MessageRejected, len(rejects))
		tel.WorkerMessages(telemetry.MessageReleased, len(releases))
		tel.WorkerMessages(telemetry.MessageDropped, dropped)
		tel.WorkerMessages(telemetry.MessageDispatched, len(ds)-len(rejects)-len(releases)-dropped)
	}()
	for _, d := range ds {
		env, err := protocol.DecodeString(d.Body)
		if err != nil {
			t.log.Warn("worker message rejected for the dead-letter queue",
				"message_id", d.ID, "receives", d.Receives, "err", err)
			rejects = append(rejects, d)
			continue
		}
		s, ok := t.lookup(env.JobID)
		if !ok {
			t.log.Info("worker message of a job not running here dropped", "job", string(env.JobID),
				"run_id", env.RunID, "worker", env.WorkerID)
			t.acks.add(d)
			dropped++
			continue
		}
		err = s.mb.Put(state.Inbound{Env: env, Done: func() { t.acks.add(d) }})
		switch {
		case errors.Is(err, state.ErrMailboxClosed):
			t.log.Info("worker message of a job at rest dropped", "job", string(env.JobID),
				"run_id", env.RunID, "worker", env.WorkerID)
			t.acks.add(d)
			dropped++
		case errors.Is(err, state.ErrMailboxFull):
			releases = append(releases, d)
		}
	}
	if len(rejects) > 0 {
		if err := t.d.Inbox.Reject(ctx, rejects); err != nil && ctx.Err() == nil {
			t.log.Warn("could not hand rejected messages back; they return after their visibility time-out",
				"count", len(rejects), "err", err)
		}
	}
	if len(releases) > 0 {
		t.log.Warn("job mailboxes full: worker messages handed back for redelivery", "count", len(releases))
		if err := t.d.Inbox.Release(ctx, releases); err != nil && ctx.Err() == nil {
			t.log.Warn("could not hand messages back; they return after their visibility time-out",
				"count", len(releases), "err", err)
		}
	}
}

// ackQueue collects handled messages for the ack loop. Adding never blocks
// and never drops: it is bounded by the messages the inbox has handed out.
type ackQueue struct {
	mu      sync.Mutex
	pending []inbox.Delivery
	wake    chan struct{}
}

func newAckQueue() *ackQueue { return &ackQueue{wake: make(chan struct{}, 1)} }

func (q *ackQueue) add(d inbox.Delivery) {
	q.mu.Lock()
	q.pending = append(q.pending, d)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *ackQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// awaitFull waits until a full batch is waiting or d has passed, and
// reports false if ctx ended first.
func (q *ackQueue) awaitFull(ctx context.Context, clk clock.Clock, d time.Duration) bool {
	tm := clk.NewTimer(d)
	defer tm.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tm.C():
			return true
		case <-q.wake:
			if q.len() >= inbox.MaxBatch {
				return true
			}
		}
	}
}

// takeBatches takes as many full batches as are waiting, leaving the rest
// to wait for company (and signalling, so the loop comes back for them);
// fewer than a batch are taken whole.
func (q *ackQueue) takeBatches() []inbox.Delivery {
	q.mu.Lock()
	n := len(q.pending) / inbox.MaxBatch * inbox.MaxBatch
	if n == 0 || n == len(q.pending) {
		ds := q.pending
		q.pending = nil
		q.mu.Unlock()
		return ds
	}
	ds := q.pending[:n:n]
	q.pending = append([]inbox.Delivery(nil), q.pending[n:]...)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return ds
}

func (q *ackQueue) take() []inbox.Delivery {
	q.mu.Lock()
	defer q.mu.Unlock()
	ds := q.pending
	q.pending = nil
	return ds
}

// ackParallel bounds the delete calls in flight at once.
const ackParallel = 4

// ackLoop deletes handled messages in batches of up to inbox.MaxBatch,
// several batches at once, so a slow delete call does not let handled
// messages pile up until their visibility runs out. Fewer than a batch
// wait up to AckLinger for more, so a trickle of messages still shares
// delete calls; under load batches are full and go at once.
func (t *tenure) ackLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.acks.wake:
		}
		if t.d.AckLinger <= 0 {
			t.ack(ctx, t.acks.take())
			continue
		}
		if t.acks.len() < inbox.MaxBatch && !t.acks.awaitFull(ctx, t.d.Clock, t.d.AckLinger) {
			return nil
		}
		t.ack(ctx, t.acks.takeBatches())
	}
}

func (t *tenure) ack(ctx context.Context, ds []inbox.Delivery) {
	var g errgroup.Group
	g.SetLimit(ackParallel)
	for len(ds) > 0 {
		n := min(len(ds), inbox.MaxBatch)
		chunk := ds[:n]
		ds = ds[n:]
		g.Go(func() error {
			if err := t.d.Inbox.Ack(ctx, chunk); err != nil && ctx.Err() == nil {
				t.log.Warn("acknowledging worker messages failed; they will be delivered again and judged duplicates",
					"count", len(chunk), "err", err)
			}
			return nil
		})
	}
	_ = g.Wait()
}

// flushAcks acknowledges what was handled after the loops ended, on a
// short context of its own: the tenure's is already cancelled.
func (t *tenure) flushAcks(parent context.Context) {
	ds := t.acks.take()
	if len(ds) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), 2*time.Second)
	defer cancel()
	t.ack(ctx, ds)
}

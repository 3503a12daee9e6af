// Package sqs is weir's adapter to Amazon SQS: the controller's Inbox over
// the worker queue, and the Publisher workers send their envelopes with.
//
// The Inbox's goroutines belong to Run: the caller starts Run (typically
// for as long as it holds the controller lease) and cancels its context to
// stop them; Run returns only when every one of them has ended. Receive,
// Ack and Reject may be called from any goroutine.
package sqs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/inbox"
)

// DefaultReceiveLinger is the Linger weir-controller uses unless told
// otherwise: with ten jobs on a controller (5 to 10 envelopes a second at
// 60 s to 10 s checkpoints) a receive then carries about eight messages,
// and with DefaultAckLinger a batch delete about ten: under 0.25 billed
// requests per message, where no linger costs up to two. A message that
// arrives during the linger waits for it, so at a trickle a worker's news
// reaches its job up to this much later; under load receives come back
// full and nothing lingers.
const DefaultReceiveLinger = 1500 * time.Millisecond

// DefaultAckLinger is how long weir-controller lets handled messages wait
// for company before a delete call that would carry fewer than ten
// (manager.Deps.AckLinger). Deleting later delays nothing a job sees: a
// handled message only has to be deleted before its visibility time-out
// (30 s), and one redelivered after a crash is judged a duplicate. Two
// seconds fill a delete at five envelopes a second (ten jobs with 60 s
// checkpoints).
const DefaultAckLinger = 2 * time.Second

// InboxOptions tune an Inbox. The zero value of each field means its
// default.
type InboxOptions struct {
	// Receivers is how many long polls may run at once (default 4). One
	// always polls; the others join only while receives come back full,
	// so an idle queue costs one request per WaitTime.
	Receivers int
	// WaitTime is the long-poll wait per receive (default and maximum
	// 20 s).
	WaitTime time.Duration
	// Linger is how long a receiver waits before polling again after a
	// receive that came back with messages but not full (default 0: at
	// once). A long poll returns as soon as one message is there, so at a
	// trickle every message costs a receive and a delete of its own;
	// lingering lets messages gather, so each receive and each batch
	// delete carries several, at the price of up to Linger of delay.
	Linger time.Duration
	// VisibilityTimeout is asked for on every receive (default 30 s, the
	// queue's own; whole seconds, at most 12 h). A message still held
	// after ExtendAfter of it is extended by another VisibilityTimeout.
	VisibilityTimeout time.Duration
	// ExtendAfter is the fraction of VisibilityTimeout after which a held
	// message's visibility is extended (default 0.5; at most 0.9).
	ExtendAfter float64
	// MaxHold bounds how long a message is kept invisible without an Ack
	// or Reject (default 15 min, or twice VisibilityTimeout if that is
	// more). Past it the inbox stops extending, the
	// message becomes visible again and is redelivered: a handler that
	// forgot a message does not hide it for ever.
	MaxHold time.Duration
	// BatchAttempts is how often an entry of a batch call is tried when
	// SQS fails it on its side (default 3).
	BatchAttempts int
	// MinBackoff and MaxBackoff bound the pause after a failed receive or
	// batch entry (defaults 200 ms and 30 s), doubled per failure, with
	// jitter.
	MinBackoff, MaxBackoff time.Duration
	// Clock drives extension and back-off (default the real clock).
	Clock clock.Clock
	// Logger receives rejections, failures and warnings (default
	// slog.Default()).
	Logger *slog.Logger
}

func (o InboxOptions) withDefaults() (InboxOptions, error) {
	if o.Receivers == 0 {
		o.Receivers = 4
	}
	if o.WaitTime == 0 {
		o.WaitTime = 20 * time.Second
	}
	if o.VisibilityTimeout == 0 {
		o.VisibilityTimeout = 30 * time.Second
	}
	if o.ExtendAfter == 0 {
		o.ExtendAfter = 0.5
	}
	if o.MaxHold == 0 {
		o.MaxHold = min(max(15*time.Minute, 2*o.VisibilityTimeout), 12*time.Hour)
	}
	if o.BatchAttempts == 0 {
		o.BatchAttempts = 3
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 200 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch {
	case o.Receivers < 1:
		return o, fmt.Errorf("sqs inbox: Receivers is %d; it must be at least 1", o.Receivers)
	case o.Linger < 0 || o.Linger > time.Minute:
		return o, fmt.Errorf("sqs inbox: Linger is %v; it must be from 0 to 1 min", o.Linger)
	case o.WaitTime < time.Second || o.WaitTime > 20*time.Second || o.WaitTime%time.Second != 0:
		return o, fmt.Errorf("sqs inbox: WaitTime is %v; SQS takes whole seconds from 1 s to 20 s", o.WaitTime)
	case o.VisibilityTimeout < time.Second || o.VisibilityTimeout > 12*time.Hour || o.VisibilityTimeout%time.Second != 0:
		return o, fmt.Errorf("sqs inbox: VisibilityTimeout is %v; SQS takes whole seconds from 1 s to 12 h", o.VisibilityTimeout)
	case o.ExtendAfter <= 0 || o.ExtendAfter > 0.9:
		return o, fmt.Errorf("sqs inbox: ExtendAfter is %g; it must be above 0 and at most 0.9 so that an extension lands before the message becomes visible", o.ExtendAfter)
	case o.MaxHold < o.VisibilityTimeout || o.MaxHold > 12*time.Hour:
		return o, fmt.Errorf("sqs inbox: MaxHold is %v; it must be between VisibilityTimeout (%v) and SQS's limit of 12 h", o.MaxHold, o.VisibilityTimeout)
	case o.BatchAttempts < 1:
		return o, fmt.Errorf("sqs inbox: BatchAttempts is %d; it must be at least 1", o.BatchAttempts)
	case o.MinBackoff < 0 || o.MaxBackoff < o.MinBackoff:
		return o, fmt.Errorf("sqs inbox: back-off bounds %v..%v are not an interval", o.MinBackoff, o.MaxBackoff)
	}
	return o, nil
}

// Inbox receives worker messages from one SQS queue. It implements
// inbox.Inbox.
type Inbox struct {
	client *awssqs.Client
	url    string
	o      InboxOptions
	batch  batchRunner

	// batches carries received messages from the receivers to Receive.
	// It is unbuffered: a receiver holds its batch (and keeps it
	// invisible) until Receive takes it.
	batches chan []inbox.Delivery
	running atomic.Bool

	mu   sync.Mutex
	held map[string]*held // by receipt handle, from receipt to Ack/Reject
	// busy is closed, and replaced, when a receive comes back full: the
	// signal for idle receivers to join in.
	busy chan struct{}
}

var _ inbox.Inbox = (*Inbox)(nil)

// held is a message the inbox keeps invisible until it is acked or
// rejected.
type held struct {
	id       string
	receives int
	// receivedAt is when SQS handed it out; visibleAt when it would show
	// again without another extension.
	receivedAt, visibleAt time.Time
}

// NewInbox returns an inbox over the queue at queueURL. The client comes
// from the caller's AWS configuration. Nothing is received until Run is
// started.
func NewInbox(client *awssqs.Client, queueURL string, opts InboxOptions) (*Inbox, error) {
	if client == nil {
		return nil, errors.New("sqs inbox: no SQS client given")
	}
	if queueURL == "" {
		return nil, errors.New("sqs inbox: the queue URL is empty; set WEIR_WORKER_QUEUE_URL to the worker queue's URL")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Inbox{
		client:  client,
		url:     queueURL,
		o:       o,
		batch:   batchRunner{clock: o.Clock, backoff: backoff{o.MinBackoff, o.MaxBackoff}, attempts: o.BatchAttempts},
		batches: make(chan []inbox.Delivery),
		held:    make(map[string]*held),
		busy:    make(chan struct{}),
	}, nil
}

// Run receives from the queue and keeps held messages invisible until ctx
// ends, then returns nil once all its goroutines have stopped. Messages
// received but not yet taken by Receive are made visible again on the
// way out. Run may be started again after it returned, but not twice at
// once.
func (in *Inbox) Run(ctx context.Context) error {
	if !in.running.CompareAndSwap(false, true) {
		return errors.New("sqs inbox: Run is already running; start it once per inbox")
	}
	defer in.running.Store(false)
	var wg sync.WaitGroup
	for i := range in.o.Receivers {
		wg.Go(func() { in.receiveLoop(ctx, i == 0) })
	}
	wg.Go(func() { in.extendLoop(ctx) })
	wg.Wait()
	// Messages handed out and never settled belonged to the work that
	// ended with Run (a tenure as leader): give them back, so the next
	// consumer, in this process or another, gets them at once, and a Run
	// that follows does not keep them invisible for the rest of MaxHold.
	if ds := in.unsettled(); len(ds) > 0 {
		in.giveBack(ctx, ds)
	}
	return nil
}

// unsettled lists the messages held: handed out (or about to be) and
// neither acked nor rejected.
func (in *Inbox) unsettled() []inbox.Delivery {
	in.mu.Lock()
	defer in.mu.Unlock()
	ds := make([]inbox.Delivery, 0, len(in.held))
	for handle, h := range in.held {
		ds = append(ds, inbox.Delivery{ID: h.id, Handle: handle, Receives: h.receives})
	}
	return ds
}

// Receive returns the next batch of at most inbox.MaxBatch messages,
// waiting until one arrives or ctx ends. It needs Run to be running.
func (in *Inbox) Receive(ctx context.Context) ([]inbox.Delivery, error) {
	select {
	case ds := <-in.batches:
		return ds, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Ack deletes handled messages, in calls of up to ten. Acking a message
// twice is harmless. Entries SQS fails on its side are retried; a
// *BatchError lists those that still failed (they will be delivered
// again).
func (in *Inbox) Ack(ctx context.Context, ds []inbox.Delivery) error {
	ds = in.release(ds)
	failed := in.batch.run(ctx, groupsOf(len(ds)), func(ctx context.Context, idx []int) ([]types.BatchResultErrorEntry, error) {
		entries := make([]types.DeleteMessageBatchRequestEntry, len(idx))
		for j, i := range idx {
			entries[j] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(ds[i].Handle)}
		}
		out, err := in.client.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: &in.url, Entries: entries})
		if err != nil {
			return nil, err
		}
		return out.Failed, nil
	})
	return in.batchError("DeleteMessageBatch", ds, failed)
}

// Reject makes messages that can never be handled visible again at once,
// so the queue's redrive policy moves them to the dead-letter queue once
// they have been received maxReceiveCount times. Each is logged with its
// id and receive count.
func (in *Inbox) Reject(ctx context.Context, ds []inbox.Delivery) error {
	ds = in.release(ds)
	for _, d := range ds {
		in.o.Logger.WarnContext(ctx, "worker message rejected; the queue's redrive policy dead-letters it after maxReceiveCount receives",
			"message_id", d.ID, "receives", d.Receives)
	}
	return in.changeVisibility(ctx, ds, 0)
}

// Release hands messages back undecided: they become visible again after
// inbox.ReleaseDelay and are delivered again (each delivery counts toward
// the queue's maxReceiveCount, as every receive does).
func (in *Inbox) Release(ctx context.Context, ds []inbox.Delivery) error {
	return in.changeVisibility(ctx, in.release(ds), inbox.ReleaseDelay)
}

// release stops extending ds and drops duplicate receipt handles.
func (in *Inbox) release(ds []inbox.Delivery) []inbox.Delivery {
	in.mu.Lock()
	defer in.mu.Unlock()
	seen := make(map[string]bool, len(ds))
	out := make([]inbox.Delivery, 0, len(ds))
	for _, d := range ds {
		if seen[d.Handle] {
			continue
		}
		seen[d.Handle] = true
		delete(in.held, d.Handle)
		out = append(out, d)
	}
	return out
}

func (in *Inbox) changeVisibility(ctx context.Context, ds []inbox.Delivery, timeout time.Duration) error {
	secs := int32(timeout / time.Second)
	failed := in.batch.run(ctx, groupsOf(len(ds)), func(ctx context.Context, idx []int) ([]types.BatchResultErrorEntry, error) {
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(idx))
		for j, i := range idx {
			entries[j] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(ds[i].Handle), VisibilityTimeout: secs}
		}
		out, err := in.client.ChangeMessageVisibilityBatch(ctx, &awssqs.ChangeMessageVisibilityBatchInput{QueueUrl: &in.url, Entries: entries})
		if err != nil {
			return nil, err
		}
		return out.Failed, nil
	})
	return in.batchError("ChangeMessageVisibilityBatch", ds, failed)
}

func (in *Inbox) batchError(op string, ds []inbox.Delivery, failed []EntryError) error {
	if len(failed) == 0 {
		return nil
	}
	for j := range failed {
		if i := failed[j].Index; i >= 0 && i < len(ds) {
			failed[j].MessageID = ds[i].ID
		}
	}
	return &BatchError{Op: op, Total: len(ds), Failed: failed}
}

// receiveLoop long-polls the queue and hands batches to Receive. The
// first receiver always polls; the others wait for a full batch, which
// says a backlog is building, and stop again once a receive comes back
// short.
func (in *Inbox) receiveLoop(ctx context.Context, always bool) {
	failures := 0
	parked := !always
	for ctx.Err() == nil {
		if parked {
			in.mu.Lock()
			busy := in.busy
			in.mu.Unlock()
			select {
			case <-busy:
			case <-ctx.Done():
				return
			}
		}
		out, err := in.client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
			QueueUrl:                    &in.url,
			MaxNumberOfMessages:         inbox.MaxBatch,
			WaitTimeSeconds:             int32(in.o.WaitTime / time.Second),
			VisibilityTimeout:           int32(in.o.VisibilityTimeout / time.Second),
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
		})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			delay := in.batch.backoff.delay(failures)
			failures++
			in.o.Logger.WarnContext(ctx, "receiving from the worker queue failed; retrying",
				"queue_url", in.url, "error", err, "failures", failures, "retry_in", delay)
			if !clock.Sleep(ctx, in.o.Clock, delay) {
				return
			}
			continue
		}
		failures = 0
		full := len(out.Messages) == inbox.MaxBatch
		if full {
			in.signalBusy()
		}
		parked = !always && !full
		if len(out.Messages) == 0 {
			continue
		}
		ds := in.hold(out.Messages)
		select {
		case in.batches <- ds:
		case <-ctx.Done():
			in.giveBack(ctx, ds)
			return
		}
		if !full && in.o.Linger > 0 && !clock.Sleep(ctx, in.o.Clock, in.o.Linger) {
			return
		}
	}
}

func (in *Inbox) signalBusy() {
	in.mu.Lock()
	defer in.mu.Unlock()
	close(in.busy)
	in.busy = make(chan struct{})
}

// hold converts received messages and starts keeping them invisible.
func (in *Inbox) hold(ms []types.Message) []inbox.Delivery {
	now := in.o.Clock.Now()
	ds := make([]inbox.Delivery, len(ms))
	in.mu.Lock()
	defer in.mu.Unlock()
	for i, m := range ms {
		receives, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		ds[i] = inbox.Delivery{
			ID:       aws.ToString(m.MessageId),
			Body:     aws.ToString(m.Body),
			Handle:   aws.ToString(m.ReceiptHandle),
			Receives: receives,
		}
		in.held[ds[i].Handle] = &held{
			id:         ds[i].ID,
			receives:   receives,
			receivedAt: now,
			visibleAt:  now.Add(in.o.VisibilityTimeout),
		}
	}
	return ds
}

// giveBack makes messages that were received but never settled visible
// again, so another consumer need not wait out the visibility timeout. It runs while shutting down, so it gets a short context of its
// own.
func (in *Inbox) giveBack(ctx context.Context, ds []inbox.Delivery) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	ds = in.release(ds)
	if err := in.changeVisibility(ctx, ds, 0); err != nil {
		in.o.Logger.WarnContext(ctx, "could not make undelivered messages visible again on shutdown; they reappear after the visibility timeout",
			"queue_url", in.url, "count", len(ds), "error", err)
	}
}

// extendLoop keeps held messages invisible. It checks three times per
// margin (the part of the visibility timeout left when a message is due),
// so an extension lands with at least two thirds of the margin to spare.
func (in *Inbox) extendLoop(ctx context.Context) {
	margin := time.Duration(float64(in.o.VisibilityTimeout) * (1 - in.o.ExtendAfter))
	t := in.o.Clock.NewTicker(max(margin/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			in.extendDue(ctx, margin)
		}
	}
}

// extendDue extends every held message that becomes visible within
// margin, and gives up on those held longer than MaxHold.
func (in *Inbox) extendDue(ctx context.Context, margin time.Duration) {
	now := in.o.Clock.Now()
	var due []inbox.Delivery
	var expired []*held
	in.mu.Lock()
	for handle, h := range in.held {
		if h.visibleAt.Sub(now) > margin {
			continue
		}
		if now.Sub(h.receivedAt)+in.o.VisibilityTimeout > in.o.MaxHold {
			delete(in.held, handle)
			expired = append(expired, h)
			continue
		}
		due = append(due, inbox.Delivery{ID: h.id, Handle: handle, Receives: h.receives})
	}
	in.mu.Unlock()
	for _, h := range expired {
		in.o.Logger.WarnContext(ctx, "worker message held too long without Ack or Reject; letting it become visible again",
			"message_id", h.id, "receives", h.receives, "held_for", now.Sub(h.receivedAt), "max_hold", in.o.MaxHold)
	}
	if len(due) == 0 {
		return
	}

	err := in.changeVisibility(ctx, due, in.o.VisibilityTimeout)
	failed := map[int]EntryError{}
	var be *BatchError
	if errors.As(err, &be) {
		for _, f := range be.Failed {
			failed[f.Index] = f
		}
	}
	visibleAt := now.Add(in.o.VisibilityTimeout)
	in.mu.Lock()
	defer in.mu.Unlock()
	for i, d := range due {
		h := in.held[d.Handle]
		if h == nil {
			continue // acked or rejected meanwhile
		}
		f, bad := failed[i]
		switch {
		case !bad:
			h.visibleAt = visibleAt
		case isGone(f.Code):
			delete(in.held, d.Handle)
		default:
			if ctx.Err() == nil {
				in.o.Logger.WarnContext(ctx, "extending a worker message's visibility failed; retrying on the next check",
					"message_id", d.ID, "error", f.String())
			}
		}
	}
}

// Held reports how many messages the inbox is keeping invisible (received,
// not yet acked or rejected).
func (in *Inbox) Held() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.held)
}

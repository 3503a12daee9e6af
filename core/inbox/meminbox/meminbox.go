// Package meminbox is an in-memory inbox.Inbox for unit tests of the core.
// It keeps the delivery semantics of an SQS standard queue with a redrive
// policy: at-least-once (optionally duplicating messages), unordered
// (optionally shuffled), messages that are not acknowledged within the
// visibility time-out come back with a higher receive count, and a message
// received MaxReceives times moves to a dead-letter list on the next
// receive. Time is read from a clock.Clock, so a test moves it by hand.
package meminbox

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/inbox"
)

// Defaults mirror the worker queue in template.yaml.
const (
	DefaultVisibilityTimeout = 30 * time.Second
	DefaultMaxReceives       = 5
)

// Options shape the inbox; the zero value is an SQS queue with the
// template's settings on the real clock, delivering in order without
// duplicates.
type Options struct {
	// Clock decides when in-flight messages become visible again
	// (clock.Real when nil).
	Clock clock.Clock
	// VisibilityTimeout is how long a received message stays hidden
	// (DefaultVisibilityTimeout when 0).
	VisibilityTimeout time.Duration
	// MaxReceives is the redrive policy's maxReceiveCount
	// (DefaultMaxReceives when 0; negative: never dead-letter).
	MaxReceives int
	// BatchSize is the most messages one Receive returns (inbox.MaxBatch
	// when 0; at most inbox.MaxBatch).
	BatchSize int
	// Duplicates is the chance, 0 to 1, that a sent message is stored
	// twice, as SQS occasionally does; each copy is delivered and acked on
	// its own.
	Duplicates float64
	// Reorder delivers visible messages in random order instead of the
	// order they were sent.
	Reorder bool
	// Seed makes Duplicates and Reorder repeatable.
	Seed uint64
}

// Stats counts what happened, for tests that assert on batching and
// redelivery.
type Stats struct {
	Sent         int // messages stored, duplicates included
	Receives     int // Receive calls that returned messages
	Delivered    int // deliveries, redeliveries included
	Redelivered  int // deliveries of a message received before
	Acked        int // messages deleted
	Rejected     int // messages made visible again by Reject
	Released     int // messages handed back undecided by Release
	DeadLettered int // messages moved to the dead-letter list
	AckCalls     int
	RejectCalls  int
	ReleaseCalls int
}

// Inbox is safe for concurrent use. Receive blocks in its caller's
// goroutine; the inbox starts none of its own.
type Inbox struct {
	clk     clock.Clock
	vt      time.Duration
	maxRecv int
	batch   int
	dups    float64
	reorder bool

	mu       sync.Mutex
	rng      *rand.Rand
	queue    []*message // in send order: visible and in flight
	dead     []inbox.Delivery
	visible  chan struct{} // closed (and replaced) when a message may have become visible
	failNext error
	stats    Stats
	ids      int
	handles  int
}

type message struct {
	id       string
	body     []byte
	receives int
	handle   string    // of the latest receive; "" if never received
	hidden   time.Time // hidden until then (zero: visible)
}

var _ inbox.Inbox = (*Inbox)(nil)

// New returns an empty inbox. It rejects options SQS would reject.
func New(o Options) (*Inbox, error) {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.VisibilityTimeout == 0 {
		o.VisibilityTimeout = DefaultVisibilityTimeout
	}
	if o.MaxReceives == 0 {
		o.MaxReceives = DefaultMaxReceives
	}
	if o.BatchSize == 0 {
		o.BatchSize = inbox.MaxBatch
	}
	switch {
	case o.VisibilityTimeout < 0:
		return nil, fmt.Errorf("meminbox: visibility timeout %s is negative", o.VisibilityTimeout)
	case o.BatchSize < 1 || o.BatchSize > inbox.MaxBatch:
		return nil, fmt.Errorf("meminbox: batch size %d is out of range: use 1 to %d", o.BatchSize, inbox.MaxBatch)
	case o.Duplicates < 0 || o.Duplicates > 1:
		return nil, fmt.Errorf("meminbox: duplicate chance %g is out of range: use 0 to 1", o.Duplicates)
	}
	return &Inbox{
		clk: o.Clock, vt: o.VisibilityTimeout, maxRecv: o.MaxReceives, batch: o.BatchSize,
		dups: o.Duplicates, reorder: o.Reorder,
		rng:     rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15)),
		visible: make(chan struct{}),
	}, nil
}

// Send stores a message (a copy of body) as a worker would, and returns its
// id. With Options.Duplicates it may be stored twice under the same id.
func (in *Inbox) Send(body []byte) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.ids++
	id := "m-" + strconv.Itoa(in.ids)
	copies := 1
	if in.dups > 0 && in.rng.Float64() < in.dups {
		copies = 2
	}
	for range copies {
		in.queue = append(in.queue, &message{id: id, body: slices.Clone(body)})
		in.stats.Sent++
	}
	in.wakeLocked()
	return id
}

// FailNext makes the next Receive, Ack or Reject return err without doing
// anything, as a failed call to SQS would.
func (in *Inbox) FailNext(err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.failNext = err
}

func (in *Inbox) takeFailure() error {
	err := in.failNext
	in.failNext = nil
	return err
}

// wakeLocked tells blocked receivers to look again.
func (in *Inbox) wakeLocked() {
	close(in.visible)
	in.visible = make(chan struct{})
}

// Receive returns up to BatchSize visible messages, waiting until there is
// one or ctx ends. Every delivery carries a fresh handle and the message's
// receive count; a message that has already been received MaxReceives
// times is moved to the dead-letter list instead.
func (in *Inbox) Receive(ctx context.Context) ([]inbox.Delivery, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		in.mu.Lock()
		if err := in.takeFailure(); err != nil {
			in.mu.Unlock()
			return nil, err
		}
		now := in.clk.Now()
		if ds := in.deliverLocked(now); len(ds) > 0 {
			in.mu.Unlock()
			return ds, nil
		}
		wake := in.visible
		next, hidden := in.nextVisibleLocked()
		in.mu.Unlock()

		if err := in.wait(ctx, wake, now, next, hidden); err != nil {
			return nil, err
		}
	}
}

// wait blocks until wake is closed, ctx ends or, if a message is in
// flight, the clock reaches next, when it becomes visible.
func (in *Inbox) wait(ctx context.Context, wake <-chan struct{}, now, next time.Time, hidden bool) error {
	var timeout <-chan time.Time
	if hidden {
		t := in.clk.NewTimer(next.Sub(now))
		defer t.Stop()
		// The clock may have moved between reading it and arming the
		// timer; then the timer is late, so look again at once.
		if !in.clk.Now().Equal(now) {
			return nil
		}
		timeout = t.C()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-wake:
	case <-timeout:
	}
	return nil
}

func (in *Inbox) deliverLocked(now time.Time) []inbox.Delivery {
	var ready []*message
	kept := in.queue[:0]
	for _, m := range in.queue {
		if m.hidden.After(now) {
			kept = append(kept, m)
			continue
		}
		if in.maxRecv > 0 && m.receives >= in.maxRecv {
			in.dead = append(in.dead, inbox.Delivery{ID: m.id, Body: m.body, Receives: m.receives})
			in.stats.DeadLettered++
			continue
		}
		kept = append(kept, m)
		ready = append(ready, m)
	}
	clear(in.queue[len(kept):])
	in.queue = kept
	if len(ready) == 0 {
		return nil
	}
	if in.reorder {
		in.rng.Shuffle(len(ready), func(i, j int) { ready[i], ready[j] = ready[j], ready[i] })
	}
	ready = ready[:min(len(ready), in.batch)]
	ds := make([]inbox.Delivery, len(ready))
	for i, m := range ready {
		in.handles++
		m.handle = "h-" + strconv.Itoa(in.handles)
		m.hidden = now.Add(in.vt)
		if m.receives > 0 {
			in.stats.Redelivered++
		}
		m.receives++
		ds[i] = inbox.Delivery{ID: m.id, Body: slices.Clone(m.body), Handle: m.handle, Receives: m.receives}
	}
	in.stats.Receives++
	in.stats.Delivered += len(ds)
	return ds
}

// nextVisibleLocked is when the first in-flight message becomes visible.
func (in *Inbox) nextVisibleLocked() (time.Time, bool) {
	var next time.Time
	for _, m := range in.queue {
		if !m.hidden.IsZero() && (next.IsZero() || m.hidden.Before(next)) {
			next = m.hidden
		}
	}
	return next, !next.IsZero()
}

// Ack deletes messages for good. As on SQS, a handle that is no longer the
// message's latest (the message was received again since) deletes nothing
// and is not an error, and acking twice is harmless; a handle this inbox
// never issued is an error.
func (in *Inbox) Ack(ctx context.Context, ds []inbox.Delivery) error {
	return in.settle(ctx, ds, func(m *message, i int) {
		in.queue = slices.Delete(in.queue, i, i+1)
		in.stats.Acked++
	}, &in.stats.AckCalls)
}

// Reject makes messages visible again at once, keeping their receive
// count, so the redrive moves them to the dead-letter list once they have
// been received MaxReceives times.
func (in *Inbox) Reject(ctx context.Context, ds []inbox.Delivery) error {
	return in.settle(ctx, ds, func(m *message, _ int) {
		m.hidden = time.Time{}
		in.stats.Rejected++
		in.wakeLocked()
	}, &in.stats.RejectCalls)
}

// Release hides messages for inbox.ReleaseDelay, keeping their receive
// count, after which they are delivered again.
func (in *Inbox) Release(ctx context.Context, ds []inbox.Delivery) error {
	return in.settle(ctx, ds, func(m *message, _ int) {
		m.hidden = in.clk.Now().Add(inbox.ReleaseDelay)
		in.stats.Released++
		in.wakeLocked()
	}, &in.stats.ReleaseCalls)
}

func (in *Inbox) settle(ctx context.Context, ds []inbox.Delivery, act func(m *message, i int), calls *int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if err := in.takeFailure(); err != nil {
		return err
	}
	for _, d := range ds {
		if !in.issuedLocked(d.Handle) {
			return fmt.Errorf("meminbox: receipt handle %q of message %s was never issued by this inbox", d.Handle, d.ID)
		}
	}
	*calls++
	for _, d := range ds {
		if i := slices.IndexFunc(in.queue, func(m *message) bool { return m.handle == d.Handle }); i >= 0 {
			act(in.queue[i], i)
		}
	}
	return nil
}

func (in *Inbox) issuedLocked(handle string) bool {
	n, err := strconv.Atoi(strings.TrimPrefix(handle, "h-"))
	return err == nil && handle == "h-"+strconv.Itoa(n) && n >= 1 && n <= in.handles
}

// Dead returns the messages moved to the dead-letter list, oldest first,
// with the receive count they had.
func (in *Inbox) Dead() []inbox.Delivery {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]inbox.Delivery, len(in.dead))
	for i, d := range in.dead {
		d.Body = slices.Clone(d.Body)
		out[i] = d
	}
	return out
}

// Len is how many messages are neither acked nor dead-lettered (visible
// or in flight).
func (in *Inbox) Len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.queue)
}

// InFlight is how many messages are received and still hidden.
func (in *Inbox) InFlight() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	now := in.clk.Now()
	n := 0
	for _, m := range in.queue {
		if m.hidden.After(now) {
			n++
		}
	}
	return n
}

// Stats returns the counts so far.
func (in *Inbox) Stats() Stats {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.stats
}

// Package meminbox is an in-memory inbox.Inbox for unit tests of the core.
// It keeps the delivery semantics of an SQS standard queue with a redrive
// policy: at-least-once (optionally duplicating messages), unordered
// (optionally shuffled), messages that are not acknowledged within the
// visibility time-out come back with a higher receive count, and a message
// received MaxReceives times moves to a dead-letter list on the next
// receive. Time is read from a clock.Clock, so a test moves it by hand.
//
// Every operation costs time in the number of messages it touches, not in
// the number stored (visible messages wait in a queue, received ones in a
// heap ordered by when they become visible again), and a Receive with
// nothing to deliver sleeps until a message is sent or becomes visible, so
// the inbox can carry load tests.
package meminbox

import (
	"container/heap"
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

	mu  sync.Mutex
	rng *rand.Rand
	// visible holds the messages that can be received, oldest first;
	// entries of messages acked meanwhile are skipped (gone).
	visible []*message
	head    int
	// hidden holds received messages by when they become visible again.
	hidden   hiddenHeap
	byHandle map[string]*message // latest receipt handle of each message
	stored   int                 // messages neither acked nor dead-lettered
	dead     []inbox.Delivery
	wake     chan struct{} // closed (and replaced) when a message may have become visible
	failNext error
	stats    Stats
	ids      int
	handles  int
}

type message struct {
	id       string
	body     string
	receives int
	handle   string    // of the latest receive; "" if never received
	hidden   time.Time // hidden until then (zero: visible)
	index    int       // in the hidden heap; -1 when not there
	queued   bool      // in the visible queue
	gone     bool      // acked or dead-lettered
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
		rng:      rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15)),
		byHandle: map[string]*message{},
		wake:     make(chan struct{}),
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
		m := &message{id: id, body: string(body), index: -1}
		in.enqueueLocked(m)
		in.stored++
		in.stats.Sent++
	}
	in.wakeLocked()
	return id
}

func (in *Inbox) enqueueLocked(m *message) {
	m.hidden = time.Time{}
	m.queued = true
	in.visible = append(in.visible, m)
}

// FailNext makes the next Receive, Ack, Reject or Release return err
// without doing anything, as a failed call to SQS would.
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
	close(in.wake)
	in.wake = make(chan struct{})
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
		wake := in.wake
		var next time.Time
		if len(in.hidden) > 0 {
			next = in.hidden[0].hidden
		}
		in.mu.Unlock()

		if err := in.wait(ctx, wake, next); err != nil {
			return nil, err
		}
	}
}

// wait blocks until wake is closed, ctx ends or, if next is set, the clock
// reaches it (a received message becomes visible again).
func (in *Inbox) wait(ctx context.Context, wake <-chan struct{}, next time.Time) error {
	var due <-chan time.Time
	if !next.IsZero() {
		d := next.Sub(in.clk.Now())
		if d <= 0 {
			return nil
		}
		t := in.clk.NewTimer(d)
		defer t.Stop()
		// A fake clock may have moved past next while the timer was
		// armed; then the timer would fire late, so look again at once.
		if !in.clk.Now().Before(next) {
			return nil
		}
		due = t.C()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-wake:
	case <-due:
	}
	return nil
}

// deliverLocked makes due messages visible again and hands out a batch.
func (in *Inbox) deliverLocked(now time.Time) []inbox.Delivery {
	for len(in.hidden) > 0 && !in.hidden[0].hidden.After(now) {
		m := heap.Pop(&in.hidden).(*message)
		in.enqueueLocked(m)
	}
	var ds []inbox.Delivery
	for len(ds) < in.batch && in.head < len(in.visible) {
		if in.reorder {
			// Pick any of the next few visible messages, as SQS's
			// best-effort order would.
			window := min(len(in.visible)-in.head, 4*in.batch)
			j := in.head + in.rng.IntN(window)
			in.visible[in.head], in.visible[j] = in.visible[j], in.visible[in.head]
		}
		m := in.visible[in.head]
		in.visible[in.head] = nil
		in.head++
		m.queued = false
		if m.gone {
			continue
		}
		if in.maxRecv > 0 && m.receives >= in.maxRecv {
			in.dead = append(in.dead, inbox.Delivery{ID: m.id, Body: m.body, Receives: m.receives})
			in.stats.DeadLettered++
			in.forgetLocked(m)
			continue
		}
		delete(in.byHandle, m.handle)
		in.handles++
		m.handle = "h-" + strconv.Itoa(in.handles)
		in.byHandle[m.handle] = m
		m.hidden = now.Add(in.vt)
		heap.Push(&in.hidden, m)
		if m.receives > 0 {
			in.stats.Redelivered++
		}
		m.receives++
		ds = append(ds, inbox.Delivery{ID: m.id, Body: m.body, Handle: m.handle, Receives: m.receives})
	}
	if in.head == len(in.visible) {
		in.visible, in.head = in.visible[:0], 0
	} else if in.head > 1024 && in.head*2 > len(in.visible) {
		n := copy(in.visible, in.visible[in.head:])
		clear(in.visible[n:])
		in.visible, in.head = in.visible[:n], 0
	}
	if len(ds) == 0 {
		return nil
	}
	in.stats.Receives++
	in.stats.Delivered += len(ds)
	return ds
}

// forgetLocked removes a message for good (acked or dead-lettered).
func (in *Inbox) forgetLocked(m *message) {
	m.gone = true
	if m.index >= 0 {
		heap.Remove(&in.hidden, m.index)
	}
	delete(in.byHandle, m.handle)
	in.stored--
}

// Ack deletes messages for good. As on SQS, a handle that is no longer the
// message's latest (the message was received again since) deletes nothing
// and is not an error, and acking twice is harmless; a handle this inbox
// never issued is an error.
func (in *Inbox) Ack(ctx context.Context, ds []inbox.Delivery) error {
	return in.settle(ctx, ds, func(m *message) {
		in.forgetLocked(m)
		in.stats.Acked++
	}, &in.stats.AckCalls)
}

// Reject makes messages visible again at once, keeping their receive
// count, so the redrive moves them to the dead-letter list once they have
// been received MaxReceives times.
func (in *Inbox) Reject(ctx context.Context, ds []inbox.Delivery) error {
	return in.settle(ctx, ds, func(m *message) {
		if m.index >= 0 {
			heap.Remove(&in.hidden, m.index)
		}
		if !m.queued {
			in.enqueueLocked(m)
		}
		in.stats.Rejected++
		in.wakeLocked()
	}, &in.stats.RejectCalls)
}

// Release hides messages for inbox.ReleaseDelay, keeping their receive
// count, after which they are delivered again.
func (in *Inbox) Release(ctx context.Context, ds []inbox.Delivery) error {
	return in.settle(ctx, ds, func(m *message) {
		if m.queued {
			return
		}
		if m.index >= 0 {
			heap.Remove(&in.hidden, m.index)
		}
		m.hidden = in.clk.Now().Add(inbox.ReleaseDelay)
		heap.Push(&in.hidden, m)
		in.stats.Released++
		in.wakeLocked()
	}, &in.stats.ReleaseCalls)
}

func (in *Inbox) settle(ctx context.Context, ds []inbox.Delivery, act func(m *message), calls *int) error {
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
		if m, ok := in.byHandle[d.Handle]; ok && !m.gone {
			act(m)
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
	return slices.Clone(in.dead)
}

// Len is how many messages are neither acked nor dead-lettered (visible
// or in flight).
func (in *Inbox) Len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.stored
}

// InFlight is how many messages are received and still hidden.
func (in *Inbox) InFlight() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	now := in.clk.Now()
	n := 0
	for _, m := range in.hidden {
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

// hiddenHeap orders received messages by when they become visible again.
type hiddenHeap []*message

func (h hiddenHeap) Len() int           { return len(h) }
func (h hiddenHeap) Less(i, j int) bool { return h[i].hidden.Before(h[j].hidden) }
func (h hiddenHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *hiddenHeap) Push(x any) {
	m := x.(*message)
	m.index = len(*h)
	*h = append(*h, m)
}
func (h *hiddenHeap) Pop() any {
	old := *h
	m := old[len(old)-1]
	old[len(old)-1] = nil
	m.index = -1
	*h = old[:len(old)-1]
	return m
}

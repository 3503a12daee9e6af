package state

import (
	"errors"
	"sync"

	"github.com/weirstream/weir/core/protocol"
)

// Inbound is a worker envelope on its way to a job. Done, if set, is called
// exactly once when the job is finished with it — applied, or judged stale —
// so the message can be acknowledged. An envelope whose Done was never called
// is redelivered by the queue.
type Inbound struct {
	Env  *protocol.Envelope
	Done func()
}

func (in Inbound) done() {
	if in.Done != nil {
		in.Done()
	}
}

// DefaultMailboxLimit bounds the envelopes one job's mailbox holds. Workers
// send about one envelope per heartbeat interval, and the newest heartbeat of
// a worker replaces an older one still waiting, so a job only reaches it when
// its workers send bursts of news while its loop is stuck in a slow call.
const DefaultMailboxLimit = 256

// Mailbox is where one job's config versions and worker messages wait for
// the job's loop. Putting never blocks, so neither the poll loop nor the
// receive loop ever waits on a job. It outlives the loop that reads it: a
// job whose loop ended (and is started again) finds what arrived meanwhile.
//
// It is bounded under any message rate: an envelope that carries no events
// replaces a waiting, older envelope of the same worker and run (the newer
// one holds the worker's whole state, so the older is stale), and past the
// limit Put refuses the envelope, which is then left for the queue to
// redeliver.
type Mailbox struct {
	mu    sync.Mutex
	wake  chan struct{}
	limit int

	// announced is the newest config version the job's index entry showed.
	announced int64

	queue  []*slot
	head   int
	latest map[sender]*slot
	closed bool
}

var (
	// ErrMailboxFull: the envelope was not kept; leave it for redelivery.
	ErrMailboxFull = errors.New("job mailbox full")
	// ErrMailboxClosed: the job came to rest and its mailbox was closed;
	// the envelope is stale.
	ErrMailboxClosed = errors.New("job mailbox closed")
)

// sender identifies a worker of one run.
type sender struct {
	run    int64
	worker string
}

type slot struct {
	in  Inbound
	key sender
	// plain: the envelope carries no events, so a newer one supersedes it.
	plain bool
}

// NewMailbox returns an empty mailbox holding at most limit envelopes
// (DefaultMailboxLimit if limit is not positive).
func NewMailbox(limit int) *Mailbox {
	if limit <= 0 {
		limit = DefaultMailboxLimit
	}
	return &Mailbox{wake: make(chan struct{}, 1), limit: limit, latest: map[sender]*slot{}}
}

// Wake is signalled whenever something new arrives.
func (b *Mailbox) Wake() <-chan struct{} { return b.wake }

func (b *Mailbox) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Announce records that the job's config is at version v (or later).
func (b *Mailbox) Announce(v int64) {
	b.mu.Lock()
	raised := v > b.announced
	if raised {
		b.announced = v
	}
	b.mu.Unlock()
	if raised {
		b.signal()
	}
}

// Announced is the newest config version announced.
func (b *Mailbox) Announced() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.announced
}

// Put adds an envelope. When the mailbox is full (ErrMailboxFull) or
// closed (ErrMailboxClosed) it keeps nothing and calls nothing: the caller
// decides. An envelope that replaces a waiting one, or is itself older than
// a waiting plain envelope of its worker, is finished (its Done called) as
// stale.
func (b *Mailbox) Put(in Inbound) error {
	env := in.Env
	key := sender{run: env.RunID, worker: env.WorkerID}
	plain := len(env.Events) == 0
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrMailboxClosed
	}
	if old, ok := b.latest[key]; ok && old.plain {
		switch {
		case plain && env.Seq > old.in.Env.Seq:
			stale := old.in
			old.in = in
			b.mu.Unlock()
			stale.done()
			b.signal()
			return nil
		case plain:
			// A late copy of a state the mailbox already has newer.
			b.mu.Unlock()
			in.done()
			return nil
		}
	}
	if len(b.queue)-b.head >= b.limit {
		b.mu.Unlock()
		return ErrMailboxFull
	}
	s := &slot{in: in, key: key, plain: plain}
	b.queue = append(b.queue, s)
	if old, ok := b.latest[key]; !ok || env.Seq > old.in.Env.Seq {
		b.latest[key] = s
	}
	b.mu.Unlock()
	b.signal()
	return nil
}

// Next takes the oldest waiting envelope.
func (b *Mailbox) Next() (Inbound, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.head == len(b.queue) {
		return Inbound{}, false
	}
	s := b.queue[b.head]
	b.queue[b.head] = nil
	b.head++
	if b.head == len(b.queue) {
		b.queue, b.head = b.queue[:0], 0
	} else if b.head > 64 && b.head*2 > len(b.queue) {
		n := copy(b.queue, b.queue[b.head:])
		clear(b.queue[n:])
		b.queue, b.head = b.queue[:n], 0
	}
	if b.latest[s.key] == s {
		delete(b.latest, s.key)
	}
	return s.in, true
}

// Len is the number of waiting envelopes.
func (b *Mailbox) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue) - b.head
}

// Close refuses every later Put and finishes every waiting envelope as
// stale (the job came to rest, so no run is left for them). It returns how
// many were waiting.
func (b *Mailbox) Close() int {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return b.drain()
}

func (b *Mailbox) drain() int {
	n := 0
	for {
		in, ok := b.Next()
		if !ok {
			return n
		}
		in.done()
		n++
	}
}

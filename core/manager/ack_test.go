package manager

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/inbox"
)

// ackCounter records the batches acknowledged.
type ackCounter struct {
	discardInbox
	mu      sync.Mutex
	batches []int
}

func (a *ackCounter) Ack(_ context.Context, ds []inbox.Delivery) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.batches = append(a.batches, len(ds))
	return nil
}

func (a *ackCounter) acked() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int(nil), a.batches...)
}

func TestAckLoopLingersForAFullBatch(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	in := &ackCounter{}
	tn := &tenure{d: Deps{Inbox: in, Clock: clk, AckLinger: 500 * time.Millisecond},
		log: slog.New(slog.DiscardHandler), acks: newAckQueue()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tn.ackLoop(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	eventually := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; batches acked: %v", what, in.acked())
			}
		}
	}
	add := func(n int) {
		for i := range n {
			tn.acks.add(inbox.Delivery{ID: strconv.Itoa(i)})
		}
	}

	// Three messages wait for company; nothing is deleted before the
	// linger has passed.
	add(3)
	eventually("the loop to wait", func() bool { return clk.Waiters() == 1 })
	clk.Advance(400 * time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	if got := in.acked(); len(got) != 0 {
		t.Fatalf("acked %v before the linger passed, want nothing yet", got)
	}
	clk.Advance(100 * time.Millisecond)
	eventually("the lingering batch", func() bool { return len(in.acked()) == 1 })
	if got := in.acked(); got[0] != 3 {
		t.Fatalf("batches %v, want [3]", got)
	}

	// A full batch goes at once, without waiting for the clock; the three
	// over it wait for company.
	add(inbox.MaxBatch + 3)
	eventually("the full batch", func() bool { return len(in.acked()) == 2 })
	if got := in.acked(); got[1] != inbox.MaxBatch {
		t.Fatalf("batches %v, want a full second batch", got)
	}
	eventually("the loop to wait again", func() bool { return clk.Waiters() == 1 })
	time.Sleep(20 * time.Millisecond)
	if got := in.acked(); len(got) != 2 {
		t.Fatalf("batches %v: the three left over went before the linger passed", got)
	}
	clk.Advance(500 * time.Millisecond)
	eventually("the left-over batch", func() bool { return len(in.acked()) == 3 })
	if got := in.acked(); got[2] != 3 {
		t.Fatalf("batches %v, want [3 10 3]", got)
	}
}

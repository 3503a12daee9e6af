package memlease

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir/core/leader"
	"github.com/weirstream/weir/core/store"
)

func acquire(t *testing.T, c leader.Lease) leader.Grant {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g, err := c.Acquire(ctx)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	return g
}

// acquireAsync runs Acquire in a goroutine the test owns.
func acquireAsync(t *testing.T, c leader.Lease) <-chan leader.Grant {
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan leader.Grant, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if g, err := c.Acquire(ctx); err == nil {
			out <- g
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return out
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func await(t *testing.T, ch <-chan leader.Grant) leader.Grant {
	t.Helper()
	select {
	case g := <-ch:
		return g
	case <-time.After(5 * time.Second):
		t.Fatal("Acquire did not return")
		return nil
	}
}

func TestOneHolderAtATimeAndFencesGrow(t *testing.T) {
	l := New()
	a, b := l.Contender("a"), l.Contender("b")
	ga := acquire(t, a)
	if ga.Fence() != 1 {
		t.Fatalf("first fence %d, want 1", ga.Fence())
	}
	if name, f, ok := l.Holder(); !ok || name != "a" || f != 1 {
		t.Fatalf("Holder = %s %d %v", name, f, ok)
	}

	pending := acquireAsync(t, b)
	select {
	case <-pending:
		t.Fatal("b acquired a lease a holds")
	case <-time.After(time.Millisecond):
	}
	if err := ga.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !isClosed(ga.Lost()) {
		t.Fatal("Lost is open after Release")
	}
	gb := await(t, pending)
	if gb.Fence() <= ga.Fence() {
		t.Fatalf("fence %d after %d: fences must grow", gb.Fence(), ga.Fence())
	}
	// a comes back: a new tenure, a higher fence still.
	if err := gb.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ga2 := acquire(t, a); ga2.Fence() != 3 {
		t.Fatalf("third fence %d, want 3", ga2.Fence())
	}
	want := []Tenure{{"a", 1}, {"b", 2}, {"a", 3}}
	got := l.Grants()
	if len(got) != len(want) {
		t.Fatalf("grants %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("grants %v, want %v", got, want)
		}
	}
}

func TestExpireClosesLostBeforeTheNextGrant(t *testing.T) {
	l := New()
	ga := acquire(t, l.Contender("a"))
	if isClosed(ga.Lost()) {
		t.Fatal("Lost closed while held")
	}
	pending := acquireAsync(t, l.Contender("b"))
	if !l.Expire() {
		t.Fatal("Expire found no holder")
	}
	gb := await(t, pending)
	if !isClosed(ga.Lost()) {
		t.Fatal("the new holder got the lease while the old one had not been told")
	}
	if isClosed(gb.Lost()) {
		t.Fatal("the new grant is lost")
	}
	// The old grant's Release must not free the new holder's lease.
	if err := ga.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if name, _, _ := l.Holder(); name != "b" {
		t.Fatalf("a stale Release freed b's lease (holder %q)", name)
	}
	l.Expire() // b's tenure ends too
	if l.Expire() {
		t.Fatal("Expire of a free lease reported a holder")
	}
}

func TestPartitionedHolderLosesAndCannotComeBackUntilHealed(t *testing.T) {
	l := New()
	a, b := l.Contender("a"), l.Contender("b")
	ga := acquire(t, a)
	l.Partition("a")
	if !isClosed(ga.Lost()) {
		t.Fatal("a partitioned holder was not told it lost the lease")
	}
	if err := ga.Release(context.Background()); err == nil {
		t.Fatal("a partitioned holder released the lease")
	}
	gb := acquire(t, b)
	if err := gb.Release(context.Background()); err != nil {
		t.Fatal(err)
	}

	pending := acquireAsync(t, a)
	select {
	case <-pending:
		t.Fatal("a partitioned contender acquired the lease")
	case <-time.After(time.Millisecond):
	}
	l.Heal("a")
	if g := await(t, pending); g.Fence() != 3 {
		t.Fatalf("fence %d after healing, want 3", g.Fence())
	}
}

func TestPartitionOfAnotherContenderKeepsTheHolder(t *testing.T) {
	l := New()
	ga := acquire(t, l.Contender("a"))
	l.Partition("b")
	if isClosed(ga.Lost()) {
		t.Fatal("partitioning b ended a's grant")
	}
}

func TestAcquireAndAwaitEndWithTheirContext(t *testing.T) {
	l := New()
	acquire(t, l.Contender("a"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := l.Contender("b").Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire = %v, want the context's error", err)
	}
	if _, err := l.AwaitHolder(ctx, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AwaitHolder = %v, want the context's error", err)
	}
}

func TestAwaitHolder(t *testing.T) {
	l := New()
	ga := acquire(t, l.Contender("a"))
	acquireAsync(t, l.Contender("b"))
	l.Expire()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := l.AwaitHolder(ctx, "b")
	if err != nil || f != ga.Fence()+1 {
		t.Fatalf("AwaitHolder = %d, %v", f, err)
	}
}

func TestManyContenders(t *testing.T) {
	l := New()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var (
		holders atomic.Int32
		mu      sync.Mutex
		fences  []store.Fence
		wg      sync.WaitGroup
	)
	for i := range 8 {
		c := l.Contender(string(rune('a' + i)))
		wg.Go(func() {
			for range 50 {
				g, err := c.Acquire(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if n := holders.Add(1); n != 1 {
					t.Errorf("%d holders at once", n)
				}
				mu.Lock()
				fences = append(fences, g.Fence())
				mu.Unlock()
				holders.Add(-1)
				if err := g.Release(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i := 1; i < len(fences); i++ {
		if fences[i] <= fences[i-1] {
			t.Fatalf("fence %d followed %d", fences[i], fences[i-1])
		}
	}
	if len(fences) != 400 {
		t.Fatalf("%d grants, want 400", len(fences))
	}
}

// Package memlease is an in-memory leader.Lease for unit tests of the
// core: one lease shared by several named contenders, as the DynamoDB
// lease record is shared by several controller processes. Grants never
// expire on their own; a test ends them with Expire or Partition, and
// watches who holds the lease with Holder, Grants and AwaitHolder.
package memlease

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/weirstream/weir/core/leader"
	"github.com/weirstream/weir/core/store"
)

// Lease is the shared lease. It is safe for concurrent use.
type Lease struct {
	mu          sync.Mutex
	holder      *grant
	fence       store.Fence
	partitioned map[string]bool
	grants      []Tenure
	changed     chan struct{} // closed (and replaced) on every change
}

// Tenure is one grant: who held the lease under which fence.
type Tenure struct {
	Holder string
	Fence  store.Fence
}

// New returns a lease nobody holds; the first grant gets fence 1.
func New() *Lease {
	return &Lease{partitioned: map[string]bool{}, changed: make(chan struct{})}
}

// Contender returns the leader.Lease one controller process uses, under
// its name.
func (l *Lease) Contender(name string) *Contender {
	return &Contender{lease: l, name: name}
}

// Contender is one process's view of the shared lease.
type Contender struct {
	lease *Lease
	name  string
}

var _ leader.Lease = (*Contender)(nil)

// Acquire waits until the lease is free and this contender can reach it,
// then takes it under a fence one above the last.
func (c *Contender) Acquire(ctx context.Context) (leader.Grant, error) {
	l := c.lease
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.holder == nil && !l.partitioned[c.name] {
			l.fence++
			g := &grant{lease: l, name: c.name, fence: l.fence, lost: make(chan struct{})}
			l.holder = g
			l.grants = append(l.grants, Tenure{Holder: c.name, Fence: g.fence})
			l.changedLocked()
			l.mu.Unlock()
			return g, nil
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		}
	}
}

func (l *Lease) changedLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// endLocked takes the lease from its holder: the holder learns first
// (Lost closes), and only then can anyone else acquire.
func (l *Lease) endLocked() {
	l.holder.closeLost()
	l.holder = nil
	l.changedLocked()
}

type grant struct {
	lease    *Lease
	name     string
	fence    store.Fence
	lost     chan struct{}
	lostOnce sync.Once
}

func (g *grant) Fence() store.Fence    { return g.fence }
func (g *grant) Lost() <-chan struct{} { return g.lost }

func (g *grant) closeLost() { g.lostOnce.Do(func() { close(g.lost) }) }

// Release gives the lease up (Lost closes too). Releasing a grant that was
// already lost does nothing; a partitioned holder cannot reach the lease.
func (g *grant) Release(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l := g.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.partitioned[g.name] {
		return fmt.Errorf("memlease: %s cannot reach the lease to release fence %d: it is partitioned", g.name, g.fence)
	}
	if l.holder == g {
		l.endLocked()
	}
	return nil
}

// Expire ends the current grant as a lease that ran out would: its Lost
// closes and the lease is free for the next contender. It reports whether
// anyone held the lease.
func (l *Lease) Expire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder == nil {
		return false
	}
	l.endLocked()
	return true
}

// Partition cuts the named contender off from the lease: if it holds the
// lease it loses it (it cannot renew), and until Heal it can neither
// acquire nor release.
func (l *Lease) Partition(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partitioned[name] = true
	if l.holder != nil && l.holder.name == name {
		l.endLocked()
	}
}

// Heal reconnects a partitioned contender.
func (l *Lease) Heal(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.partitioned, name)
	l.changedLocked()
}

// Holder says who holds the lease now, under which fence.
func (l *Lease) Holder() (name string, fence store.Fence, held bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder == nil {
		return "", 0, false
	}
	return l.holder.name, l.holder.fence, true
}

// Grants returns every grant so far, oldest first.
func (l *Lease) Grants() []Tenure {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.grants)
}

// AwaitHolder waits until the named contender holds the lease and returns
// its fence.
func (l *Lease) AwaitHolder(ctx context.Context, name string) (store.Fence, error) {
	for {
		l.mu.Lock()
		if l.holder != nil && l.holder.name == name {
			f := l.holder.fence
			l.mu.Unlock()
			return f, nil
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("memlease: waiting for %s to hold the lease: %w", name, ctx.Err())
		case <-changed:
		}
	}
}

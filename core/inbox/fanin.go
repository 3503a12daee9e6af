package inbox

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weirstream/weir/core/clock"
)

// FanIn combines several inboxes into one: Receive returns a batch from
// whichever source has messages first, and Ack, Reject and Release route
// each delivery back to the source it came from. It lets the controller
// read a batched queue and an urgent one through the same pipeline, so a
// message on the urgent queue never waits behind the other's linger.
//
// Like the SQS inbox, its goroutines belong to Run, which the caller runs
// (the manager: for a tenure as leader); Run also runs every source that
// is a Runner. Receive needs Run to be running.
type FanIn struct {
	sources []Inbox
	clock   clock.Clock
	batches chan fanBatch
	running sync.Mutex
}

type fanBatch struct {
	ds  []Delivery
	err error
}

// NewFanIn combines sources; the clock paces retries after a source's
// failed Receive (clock.Real when nil).
func NewFanIn(c clock.Clock, sources ...Inbox) (*FanIn, error) {
	if len(sources) == 0 {
		return nil, errors.New("inbox fan-in: no source inboxes given")
	}
	for i, s := range sources {
		if s == nil {
			return nil, fmt.Errorf("inbox fan-in: source %d is nil", i)
		}
	}
	if c == nil {
		c = clock.Real{}
	}
	return &FanIn{sources: sources, clock: c, batches: make(chan fanBatch)}, nil
}

// Run runs the sources that need it and one receive pump per source until
// ctx ends; it returns once all of them have ended, with the first error
// a source's Run returned (nil when ctx ended).
func (f *FanIn) Run(ctx context.Context) error {
	if !f.running.TryLock() {
		return errors.New("inbox fan-in: Run is already running; start it once")
	}
	defer f.running.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for i, s := range f.sources {
		if r, ok := s.(Runner); ok {
			wg.Go(func() {
				if err := r.Run(ctx); err != nil && ctx.Err() == nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("inbox fan-in: source %d: %w", i, err) })
					// One source's receiving is gone: stop the rest too,
					// so the caller sees the failure rather than a
					// half-deaf inbox.
					cancel()
				}
			})
		}
		wg.Go(func() { f.pump(ctx, i, s) })
	}
	wg.Wait()
	return firstErr
}

// pump moves one source's batches to Receive, tagging each handle with the
// source's index. A batch received as ctx ends is dropped undecided: the
// source gives it back (the SQS inbox does so when its Run ends) or it
// returns after its visibility time-out.
func (f *FanIn) pump(ctx context.Context, i int, s Inbox) {
	backoff := time.Duration(0)
	for {
		ds, err := s.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			err = fmt.Errorf("source %d: %w", i, err)
		}
		for j := range ds {
			ds[j].Handle = strconv.Itoa(i) + ":" + ds[j].Handle
		}
		select {
		case f.batches <- fanBatch{ds, err}:
		case <-ctx.Done():
			return
		}
		if err == nil {
			backoff = 0
			continue
		}
		// A failing source must not spin; the other sources keep going.
		backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
		t := f.clock.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// Receive returns the next batch of any source, waiting until one arrives
// or ctx ends. A source's failed receive is returned as an error.
func (f *FanIn) Receive(ctx context.Context) ([]Delivery, error) {
	select {
	case b := <-f.batches:
		return b.ds, b.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Ack acks each delivery at the source it came from.
func (f *FanIn) Ack(ctx context.Context, ds []Delivery) error {
	return f.route(ctx, ds, Inbox.Ack)
}

// Reject rejects each delivery at the source it came from.
func (f *FanIn) Reject(ctx context.Context, ds []Delivery) error {
	return f.route(ctx, ds, Inbox.Reject)
}

// Release releases each delivery at the source it came from.
func (f *FanIn) Release(ctx context.Context, ds []Delivery) error {
	return f.route(ctx, ds, Inbox.Release)
}

// route splits ds by source, restores each handle as the source issued it,
// and calls op once per source involved. Every source is tried; the
// errors are joined.
func (f *FanIn) route(ctx context.Context, ds []Delivery, op func(Inbox, context.Context, []Delivery) error) error {
	groups := make([][]Delivery, len(f.sources))
	var errs []error
	for _, d := range ds {
		prefix, handle, ok := strings.Cut(d.Handle, ":")
		i, err := strconv.Atoi(prefix)
		if !ok || err != nil || i < 0 || i >= len(f.sources) {
			errs = append(errs, fmt.Errorf("inbox fan-in: message %s has handle %q, which this fan-in did not issue", d.ID, d.Handle))
			continue
		}
		d.Handle = handle
		groups[i] = append(groups[i], d)
	}
	for i, g := range groups {
		if len(g) == 0 {
			continue
		}
		if err := op(f.sources[i], ctx, g); err != nil {
			errs = append(errs, fmt.Errorf("inbox fan-in: source %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

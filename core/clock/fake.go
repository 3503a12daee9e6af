package clock

import (
	"sort"
	"sync"
	"time"
)

// Fake is a clock that moves only when told to. Tickers and timers made from
// it fire, in time order, as Advance passes their deadlines. Channels are
// buffered by one and a tick is dropped when the reader is behind, as with
// time.Ticker.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*fakeWaiter
}

var _ Clock = (*Fake)(nil)

// NewFake returns a fake clock set to start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

type fakeWaiter struct {
	c      chan time.Time
	at     time.Time
	period time.Duration // 0 for a timer
	active bool
}

func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *Fake) Since(t time.Time) time.Duration { return f.Now().Sub(t) }

// Set moves the clock to t (which must not be before Now) firing what is due.
func (f *Fake) Set(t time.Time) { f.Advance(t.Sub(f.Now())) }

// Advance moves the clock forward by d, firing every ticker and timer whose
// deadline it passes.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	end := f.now.Add(d)
	for {
		w := f.nextDue(end)
		if w == nil {
			break
		}
		f.now = w.at
		select {
		case w.c <- w.at:
		default:
		}
		if w.period > 0 {
			w.at = w.at.Add(w.period)
		} else {
			w.active = false
		}
	}
	f.now = end
	f.prune()
}

func (f *Fake) nextDue(end time.Time) *fakeWaiter {
	var next *fakeWaiter
	for _, w := range f.waiters {
		if w.active && !w.at.After(end) && (next == nil || w.at.Before(next.at)) {
			next = w
		}
	}
	return next
}

func (f *Fake) prune() {
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if w.active {
			kept = append(kept, w)
		}
	}
	for i := len(kept); i < len(f.waiters); i++ {
		f.waiters[i] = nil
	}
	f.waiters = kept
}

// Waiters reports how many tickers and timers are active; tests use it to
// wait until a goroutine has armed its timer.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, w := range f.waiters {
		if w.active {
			n++
		}
	}
	return n
}

// NextDeadline is the earliest moment a ticker or timer fires, if any.
func (f *Fake) NextDeadline() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ws := make([]*fakeWaiter, 0, len(f.waiters))
	for _, w := range f.waiters {
		if w.active {
			ws = append(ws, w)
		}
	}
	if len(ws) == 0 {
		return time.Time{}, false
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].at.Before(ws[j].at) })
	return ws[0].at, true
}

func (f *Fake) add(d, period time.Duration) *fakeWaiter {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := &fakeWaiter{c: make(chan time.Time, 1), at: f.now.Add(d), period: period, active: true}
	f.waiters = append(f.waiters, w)
	return w
}

func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	return &fakeTicker{f: f, w: f.add(d, d)}
}

func (f *Fake) NewTimer(d time.Duration) Timer { return &fakeTimer{f: f, w: f.add(d, 0)} }

type fakeTicker struct {
	f *Fake
	w *fakeWaiter
}

func (t *fakeTicker) C() <-chan time.Time { return t.w.c }
func (t *fakeTicker) Stop() {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.w.active = false
}

type fakeTimer struct {
	f *Fake
	w *fakeWaiter
}

func (t *fakeTimer) C() <-chan time.Time { return t.w.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	was := t.w.active
	t.w.active = false
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	was := t.w.active
	t.w.at = t.f.now.Add(d)
	if !was {
		t.w.active = true
		t.f.waiters = append(t.f.waiters, t.w)
	}
	return was
}

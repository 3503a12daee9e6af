package inbox_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/inbox"
	"github.com/weirstream/weir/core/inbox/meminbox"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newMem(t *testing.T, c clock.Clock) *meminbox.Inbox {
	t.Helper()
	in, err := meminbox.New(meminbox.Options{Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// startFanIn runs the fan-in for the test's length; Cleanup waits for Run.
func startFanIn(t *testing.T, f *inbox.FanIn) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func receive(t *testing.T, f *inbox.FanIn) ([]inbox.Delivery, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return f.Receive(ctx)
}

func TestFanInRoutesSettlementsToTheSourceEvenWhenHandlesCollide(t *testing.T) {
	c := clock.NewFake(epoch)
	routine, urgent := newMem(t, c), newMem(t, c)
	f, err := inbox.NewFanIn(c, routine, urgent)
	if err != nil {
		t.Fatal(err)
	}
	startFanIn(t, f)
	routine.Send([]byte("heartbeat"))
	urgent.Send([]byte("failed"))

	got := map[string]inbox.Delivery{}
	for len(got) < 2 {
		ds, err := receive(t, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			got[d.Body] = d
		}
	}
	if got["heartbeat"].Handle == got["failed"].Handle {
		t.Fatalf("both deliveries carry handle %q; settling one would settle the other", got["failed"].Handle)
	}
	// Both sources issued their first handle; only the urgent one is acked.
	if err := f.Ack(context.Background(), []inbox.Delivery{got["failed"]}); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if s := urgent.Stats(); s.Acked != 1 || urgent.InFlight() != 0 {
		t.Errorf("urgent source: acked %d, in flight %d; want 1, 0", s.Acked, urgent.InFlight())
	}
	if s := routine.Stats(); s.Acked != 0 || routine.InFlight() != 1 {
		t.Errorf("routine source: acked %d, in flight %d; want 0, 1", s.Acked, routine.InFlight())
	}
	if err := f.Release(context.Background(), []inbox.Delivery{got["heartbeat"]}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if s := routine.Stats(); s.Released != 1 {
		t.Errorf("routine source released %d; want 1", s.Released)
	}
	if s := urgent.Stats(); s.Released != 0 {
		t.Errorf("urgent source released %d; want 0", s.Released)
	}
}

func TestFanInRejectsHandlesItDidNotIssue(t *testing.T) {
	c := clock.NewFake(epoch)
	a := newMem(t, c)
	f, err := inbox.NewFanIn(c, a)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h-1", "7:h-1", "x:h-1"} {
		if err := f.Ack(context.Background(), []inbox.Delivery{{ID: "m", Handle: h}}); err == nil {
			t.Errorf("Ack of handle %q: no error", h)
		}
	}
	if a.Stats().AckCalls != 0 {
		t.Errorf("source saw %d ack calls for foreign handles", a.Stats().AckCalls)
	}
}

// A message on one source is delivered while the other holds nothing: no
// source's Receive waits on another's.
func TestFanInDeliversFromAnIdleAndABusySource(t *testing.T) {
	c := clock.NewFake(epoch)
	idle, busy := newMem(t, c), newMem(t, c)
	f, err := inbox.NewFanIn(c, idle, busy)
	if err != nil {
		t.Fatal(err)
	}
	startFanIn(t, f)
	var want []string
	for _, b := range []string{"a", "b", "c"} {
		busy.Send([]byte(b))
		want = append(want, b)
	}
	var bodies []string
	for len(bodies) < len(want) {
		ds, err := receive(t, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			bodies = append(bodies, d.Body)
		}
	}
	slices.Sort(bodies)
	if !slices.Equal(bodies, want) {
		t.Errorf("received %v; want %v", bodies, want)
	}
}

func TestFanInPassesASourceFailureOnAndKeepsReceiving(t *testing.T) {
	c := clock.NewFake(epoch)
	a, b := newMem(t, c), newMem(t, c)
	f, err := inbox.NewFanIn(c, a, b)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	a.FailNext(boom)
	startFanIn(t, f)
	if _, err := receive(t, f); !errors.Is(err, boom) {
		t.Fatalf("Receive: %v; want the source's failure", err)
	}
	// The failed source backs off on the clock; the other one is not held
	// up by it.
	b.Send([]byte("b"))
	ds, err := receive(t, f)
	if err != nil || len(ds) != 1 || ds[0].Body != "b" {
		t.Fatalf("Receive: %v, %v; want the other source's message", ds, err)
	}
	// After the back-off the failed source delivers again.
	a.Send([]byte("a"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.Advance(time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		ds, err := f.Receive(ctx)
		cancel()
		if err == nil && len(ds) == 1 && ds[0].Body == "a" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failed source never delivered again")
		}
	}
}

func TestNewFanInNeedsSources(t *testing.T) {
	if _, err := inbox.NewFanIn(nil); err == nil {
		t.Error("NewFanIn with no sources: no error")
	}
	if _, err := inbox.NewFanIn(nil, nil); err == nil {
		t.Error("NewFanIn with a nil source: no error")
	}
}

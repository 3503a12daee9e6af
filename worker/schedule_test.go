package worker

import (
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
)

// TestReadCadence measures reads of the command record on the fake clock:
// fast until the start command is seen, backing off to one per 10 s while
// nothing changes, and, once two checkpoints have shown their spacing,
// reading fast just when the next is due, so each is seen within the fast
// interval of being written, at about one read per checkpoint.
func TestReadCadence(t *testing.T) {
	h := newHarness(t, Options{})
	h.run()
	h.advance(3 * time.Second)
	if got := h.cmds.readCount(); got < 6 {
		t.Fatalf("%d reads in 3 s before the start command, want one per 500 ms", got)
	}
	h.startRun(0)
	h.advance(time.Second)
	before := h.cmds.readCount()
	h.advance(5 * time.Minute)
	idle := h.cmds.readCount() - before
	if idle < 29 || idle > 36 {
		t.Fatalf("%d reads in 5 idle minutes, want about 30 (one per 10 s after backing off)", idle)
	}

	const spacing = 10 * time.Second
	start := h.clk.Now()
	before = h.cmds.readCount()
	const n = 30
	for e := int64(1); e <= n; e++ {
		h.advance(start.Add(time.Duration(e) * spacing).Sub(h.clk.Now()))
		h.checkpoint(e, false)
	}
	h.advance(time.Second)
	reads := h.cmds.readCount() - before
	perCheckpoint := float64(reads) / n
	t.Logf("%.2f reads per checkpoint 10 s apart", perCheckpoint)
	if perCheckpoint > 2.5 {
		t.Errorf("%d reads for %d checkpoints 10 s apart: %.1f per checkpoint, want at most 2.5", reads, n, perCheckpoint)
	}
	h.prog.mu.Lock()
	defer h.prog.mu.Unlock()
	for e := int64(3); e <= n; e++ {
		written := start.Add(time.Duration(e) * spacing)
		if late := h.prog.seenAt[e].Sub(written); late < 0 || late > DefaultFastRead {
			t.Errorf("checkpoint %d started %s after it was written, want within %s", e, late, DefaultFastRead)
		}
	}
}

// When the record states the checkpoint interval, a worker reads once
// per checkpoint, when the next is due, whatever the interval, and still
// sees each within the fast interval: the controller starts checkpoints
// an interval apart or a few ticks later, never sooner. A first
// checkpoint seen late (by a slow read) does not keep the later ones late.
func TestReadCadenceWithTheRecordsInterval(t *testing.T) {
	for _, spacing := range []time.Duration{10 * time.Second} {
		h := newHarness(t, Options{})
		h.run()
		h.cmds.write(func(c *job.Commands) { c.CheckpointInterval = spacing })
		h.startRun(0)
		h.advance(time.Minute) // reads back off to the slow pace
		n := int64(3 * time.Minute / spacing)
		written := map[int64]time.Time{}
		at := h.clk.Now().Add(3 * time.Second)
		var start time.Time
		before := 0
		for e := int64(1); e <= n; e++ {
			h.advance(at.Sub(h.clk.Now()))
			if e == 3 { // measured from the third on: the first is seen late
				start, before = h.clk.Now(), h.cmds.readCount()
			}
			h.checkpoint(e, false)
			written[e] = h.clk.Now()
			// An interval later, or up to three 100 ms ticks more.
			at = at.Add(spacing + time.Duration(e%4)*100*time.Millisecond)
		}
		h.advance(at.Sub(h.clk.Now()))
		minutes := h.clk.Now().Sub(start).Minutes()
		reads := float64(h.cmds.readCount()-before) / minutes
		idle := float64(time.Minute / DefaultSlowRead)
		t.Logf("checkpoints %s apart: %.1f reads a minute", spacing, reads)
		if most := max(idle, time.Minute.Seconds()/spacing.Seconds()) * 1.4; reads > most {
			t.Errorf("checkpoints %s apart: %.1f reads a minute, want at most %.1f", spacing, reads, most)
		}
		h.prog.mu.Lock()
		for e := int64(3); e <= n; e++ {
			if late := h.prog.seenAt[e].Sub(written[e]); late < 0 || late > DefaultFastRead {
				t.Errorf("checkpoints %s apart: checkpoint %d started %s after it was written, want within %s", spacing, e, late, DefaultFastRead)
			}
		}
		h.prog.mu.Unlock()
	}
}

// Checkpoints that take longer than the interval come further apart than
// it says: after a few, the worker reads for them where they have been
// coming, not in a window after the interval, so they are not seen late.
func TestReadCadenceWhenCheckpointsComeLaterThanTheInterval(t *testing.T) {
	h := newHarness(t, Options{})
	h.run()
	h.cmds.write(func(c *job.Commands) { c.CheckpointInterval = 10 * time.Second })
	h.startRun(0)
	h.advance(30 * time.Second)
	const spacing, n, from = 21 * time.Second, 14, 7
	written := map[int64]time.Time{}
	at := h.clk.Now().Add(3 * time.Second)
	var before int
	for e := int64(1); e <= n; e++ {
		h.advance(at.Sub(h.clk.Now()))
		if e == from {
			before = h.cmds.readCount()
		}
		h.checkpoint(e, false)
		written[e] = h.clk.Now()
		at = at.Add(spacing)
	}
	h.advance(time.Second)
	perCheckpoint := float64(h.cmds.readCount()-before) / (n - from + 1)
	t.Logf("%.1f reads per checkpoint %s apart at a stated interval of 10 s", perCheckpoint, spacing)
	if perCheckpoint > 8 {
		t.Errorf("%.1f reads per checkpoint, want at most 8", perCheckpoint)
	}
	h.prog.mu.Lock()
	defer h.prog.mu.Unlock()
	for e := int64(from); e < n; e++ {
		if late := h.prog.seenAt[e].Sub(written[e]); late < 0 || late > DefaultFastRead {
			t.Errorf("checkpoint %d started %s after it was written, want within %s", e, late, DefaultFastRead)
		}
	}
}

// The record's interval bounds when the next checkpoint can come: the
// first read is when it is due if it follows the newest exactly an
// interval later, and sooner when the newest was seen late.
func TestScheduleReadsWhenTheStatedIntervalHasPassed(t *testing.T) {
	s := newSchedule(500*time.Millisecond, 10*time.Second, 5*time.Second, 30*time.Second)
	now := t0
	s.observe(now, observation{version: 1, interval: 10 * time.Second})
	// Epoch 1 seen by a read 10 s after the one before: it appeared
	// somewhere in those 10 s, so epoch 2 may come from 10 s after that
	// read; fast reads cover the last window (5 s) before it is due at
	// the latest, an interval after epoch 1 was seen.
	now = now.Add(10 * time.Second)
	s.observe(now, observation{version: 2, epoch: 1, quiet: true, interval: 10 * time.Second})
	exp, ok := s.expected()
	if want := now.Add(5 * time.Second); !ok || !exp.Equal(want) {
		t.Fatalf("expected = %v, %v; want %v", exp, ok, want)
	}
	if d := s.next(now); d != 5*time.Second {
		t.Fatalf("next read in %s, want 5s", d)
	}
	// Epoch 2 seen 500 ms after the read before, at 17 s: it follows
	// epoch 1 by at least the interval, so it cannot have appeared before
	// 16.5 s; epoch 3 is read for a fast interval after its earliest.
	now = now.Add(6500 * time.Millisecond)
	s.observe(now, observation{version: 2, epoch: 1, interval: 10 * time.Second})
	now = now.Add(500 * time.Millisecond)
	s.observe(now, observation{version: 3, epoch: 2, quiet: true, interval: 10 * time.Second})
	exp, _ = s.expected()
	if want := now.Add(10 * time.Second); !exp.Equal(want) {
		t.Fatalf("expected = %v, want %v (an interval after epoch 2 was seen)", exp, want)
	}
	if d := s.next(now); d != 10*time.Second {
		t.Fatalf("next read in %s, want 10s: nothing can come sooner", d)
	}
	// Epoch 3, started late, is missed by that read and seen by the fast
	// read after it: its earliest is the read that missed it (27 s), and
	// epoch 4 is read for a fast interval after an interval past that.
	now = now.Add(10 * time.Second)
	s.observe(now, observation{version: 3, epoch: 2, interval: 10 * time.Second})
	now = now.Add(500 * time.Millisecond)
	s.observe(now, observation{version: 4, epoch: 3, quiet: true, interval: 10 * time.Second})
	exp, _ = s.expected()
	if want := now.Add(10 * time.Second); !exp.Equal(want) {
		t.Fatalf("expected = %v, want %v", exp, want)
	}
}

func TestScheduleBacksOffAndWakesForTheExpectedCheckpoint(t *testing.T) {
	s := newSchedule(500*time.Millisecond, 10*time.Second, 5*time.Second, 30*time.Second)
	now := t0
	s.observe(now, observation{version: 1, waiting: true})
	if d := s.next(now); d != 500*time.Millisecond {
		t.Fatalf("waiting for the start: next read in %s, want 500ms", d)
	}
	s.observe(now, observation{version: 2})
	var got []time.Duration
	for range 6 {
		got = append(got, s.next(now))
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("back-off = %v, want %v", got, want)
		}
	}
	// Two checkpoints 60 s apart, each seen by a read 500 ms after the
	// one before: each most likely appeared 250 ms before it was seen,
	// the next is expected 60 s after the second, and the read before
	// it comes 500 ms earlier, whatever the back-off.
	s.observe(now.Add(-500*time.Millisecond), observation{version: 2})
	s.observe(now, observation{version: 3, epoch: 1, quiet: true})
	now = now.Add(60 * time.Second)
	s.observe(now.Add(-500*time.Millisecond), observation{version: 3, epoch: 1})
	s.observe(now, observation{version: 4, epoch: 2, quiet: true})
	exp, ok := s.expected()
	if want := now.Add(60*time.Second - 250*time.Millisecond); !ok || !exp.Equal(want) {
		t.Fatalf("expected = %v, %v; want %v", exp, ok, want)
	}
	now = now.Add(54 * time.Second)
	if d := s.next(now); d != 5250*time.Millisecond {
		t.Fatalf("6 s before the expected checkpoint: next read in %s, want 5.25s", d)
	}
	now = exp.Add(-500 * time.Millisecond)
	if d := s.next(now); d != 500*time.Millisecond {
		t.Fatalf("just before the expected checkpoint: next read in %s, want fast", d)
	}
	// It does not come: after the window, back to the slow pace.
	now = now.Add(6 * time.Second)
	if d := s.next(now); d != 10*time.Second {
		t.Fatalf("after the window: next read in %s, want 10s", d)
	}
	// Waiting for a commit reads fast, but only for the pending window.
	s.observe(now, observation{version: 4, epoch: 2, awaitingCommit: true})
	if d := s.next(now); d != 500*time.Millisecond {
		t.Fatalf("awaiting a commit: next read in %s, want fast", d)
	}
	now = now.Add(31 * time.Second)
	s.observe(now, observation{version: 4, epoch: 2, awaitingCommit: true})
	if d := s.next(now); d == 500*time.Millisecond {
		t.Fatal("still reading fast for a commit after the pending window")
	}
}

func TestScheduleLearnsHowLongCommitsTake(t *testing.T) {
	s := newSchedule(500*time.Millisecond, 10*time.Second, 5*time.Second, 30*time.Second)
	now := t0
	s.observe(now, observation{version: 1})
	// The first commit is awaited at the fast pace; it comes after 2 s.
	s.observe(now, observation{version: 2, epoch: 1, awaitingCommit: true, quiet: true})
	if d := s.next(now); d != 500*time.Millisecond {
		t.Fatalf("awaiting the first commit: next read in %s, want fast", d)
	}
	now = now.Add(2 * time.Second)
	s.observe(now, observation{version: 3, epoch: 1, quiet: true})
	// The next wait skips the reads that would come too early.
	now = now.Add(10 * time.Second)
	s.observe(now, observation{version: 4, epoch: 2, awaitingCommit: true, quiet: true})
	if d := s.next(now); d != 1500*time.Millisecond {
		t.Fatalf("awaiting the next commit: next read in %s, want 1.5s (500 ms before the last lag)", d)
	}
	now = now.Add(1500 * time.Millisecond)
	if d := s.next(now); d != 500*time.Millisecond {
		t.Fatalf("near the expected commit: next read in %s, want fast", d)
	}
}

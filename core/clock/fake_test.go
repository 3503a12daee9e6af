package clock

import (
	"testing"
	"time"
)

func TestFakeTickerFiresOnEachPeriod(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	tk := f.NewTicker(200 * time.Millisecond)
	defer tk.Stop()
	f.Advance(199 * time.Millisecond)
	select {
	case <-tk.C():
		t.Fatal("ticker fired before its period")
	default:
	}
	f.Advance(time.Millisecond)
	select {
	case at := <-tk.C():
		if want := time.Unix(0, 0).Add(200 * time.Millisecond); !at.Equal(want) {
			t.Fatalf("tick at %v, want %v", at, want)
		}
	default:
		t.Fatal("ticker did not fire at its period")
	}
}

func TestFakeTimerStopAndReset(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	tm := f.NewTimer(time.Second)
	if !tm.Stop() {
		t.Fatal("Stop of an active timer reported inactive")
	}
	f.Advance(2 * time.Second)
	select {
	case <-tm.C():
		t.Fatal("stopped timer fired")
	default:
	}
	tm.Reset(time.Second)
	if f.Waiters() != 1 {
		t.Fatalf("waiters = %d after Reset, want 1", f.Waiters())
	}
	f.Advance(time.Second)
	select {
	case <-tm.C():
	default:
		t.Fatal("reset timer did not fire")
	}
	if f.Waiters() != 0 {
		t.Fatalf("fired timer still active")
	}
}

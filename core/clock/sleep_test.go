package clock

import (
	"context"
	"testing"
	"time"
)

func TestSleepWaitsTheWholeDuration(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	done := make(chan bool)
	go func() { done <- Sleep(context.Background(), f, time.Second) }()
	for f.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	f.Advance(999 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("Sleep returned before its duration passed")
	case <-time.After(10 * time.Millisecond):
	}
	f.Advance(time.Millisecond)
	if !<-done {
		t.Fatal("Sleep reported a cancelled wait after the whole duration")
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, NewFake(time.Unix(0, 0)), time.Hour) {
		t.Fatal("Sleep reported a whole wait although its context had ended")
	}
}

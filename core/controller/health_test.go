package controller

import (
	"testing"
	"time"

	"github.com/weirstream/weir/core/protocol"
)

func TestHealthIsTheLeastRecentlyHeardWorkerAndTheRates(t *testing.T) {
	h := newHarness(t, false)
	if hl := h.c.Health(); !hl.HeartbeatAt.IsZero() || !hl.TakenAt.Equal(t0) {
		t.Fatalf("health before any worker was heard = %+v, want no heartbeat, taken at %s", hl, t0)
	}
	h.running() // every worker heard at t0
	h.advance(3*time.Second + 1500*time.Microsecond)
	h.send("w-1")
	if hl := h.c.Health(); !hl.HeartbeatAt.Equal(t0) {
		t.Errorf("heartbeat_at = %s, want w-0's last (%s), the least recently heard", hl.HeartbeatAt, t0)
	}
	h.advance(time.Second)
	h.send("w-0")
	hl := h.c.Health()
	// w-1 was heard 3.0015 s in: kept to the millisecond.
	if want := t0.Add(3001 * time.Millisecond); !hl.HeartbeatAt.Equal(want) || hl.HeartbeatAt.Location() != time.UTC {
		t.Errorf("heartbeat_at = %s, want %s in UTC", hl.HeartbeatAt, want)
	}

	// Rates are the last aggregation's, rounded to the hundredth.
	h.expectContinue()
	h.advance(3 * time.Second)
	if err := h.c.HandleMessage(h.envelope("w-0", &protocol.Heartbeat{Metrics: []protocol.TaskMetrics{
		{Operator: "src", Subtask: 0, RecordsIn: 100, RecordsOut: 7},
	}})); err != nil {
		t.Fatal(err)
	}
	h.expectContinue()
	hl = h.c.Health()
	m := h.c.Metrics()
	if m.RecordsInRate == 0 || hl.RecordsInPerSec != round2(m.RecordsInRate) || hl.RecordsOutPerSec != round2(m.RecordsOutRate) {
		t.Errorf("health rates %v/%v, metrics %v/%v", hl.RecordsInPerSec, hl.RecordsOutPerSec, m.RecordsInRate, m.RecordsOutRate)
	}
	if hl.RecordsOutPerSec*100 != float64(int64(hl.RecordsOutPerSec*100)) {
		t.Errorf("rate %v not rounded to the hundredth", hl.RecordsOutPerSec)
	}
	if !hl.TakenAt.Equal(h.clk.Now().Truncate(time.Millisecond)) {
		t.Errorf("taken_at = %s, want now", hl.TakenAt)
	}
}

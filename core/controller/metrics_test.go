package controller

import (
	"math"
	"testing"
	"time"

	"github.com/weirstream/weir/core/protocol"
)

func TestMetricsAreAggregatedEveryInterval(t *testing.T) {
	h := newHarness(t, false) // every 2 s, rates over 10 s
	h.running()
	beat := func(w string, ms ...protocol.TaskMetrics) {
		t.Helper()
		if err := h.c.HandleMessage(h.envelope(w, &protocol.Heartbeat{Metrics: ms})); err != nil {
			t.Fatal(err)
		}
	}
	now := h.clk.Now()
	beat("w-0",
		protocol.TaskMetrics{Operator: "src", Subtask: 0, RecordsIn: 100, RecordsOut: 100, BytesIn: 1000, Backpressure: 0.2,
			WatermarkMs: now.Add(-3 * time.Second).UnixMilli()},
		protocol.TaskMetrics{Operator: "sink", Subtask: 0, RecordsIn: 50, BytesOut: 10})
	beat("w-1",
		protocol.TaskMetrics{Operator: "src", Subtask: 1, RecordsIn: 100, RecordsOut: 100, Backpressure: 0.7,
			WatermarkMs: now.Add(-time.Second).UnixMilli()})

	h.expectContinue() // the first pass aggregates
	got := h.rec.metricCalls()
	if len(got) != 1 {
		t.Fatalf("%d metrics exports, want 1", len(got))
	}
	m := got[0]
	if m.RecordsIn != 250 || m.RecordsOut != 200 || m.BytesIn != 1000 || m.BytesOut != 10 {
		t.Errorf("totals = %+v", m)
	}
	if m.Backpressure != 0.7 || m.WatermarkLag != 3*time.Second || m.RecordsInRate != 0 {
		t.Errorf("backpressure %v, lag %s, rate %v; want 0.7, 3s (the lowest watermark), 0", m.Backpressure, m.WatermarkLag, m.RecordsInRate)
	}

	h.advance(2*time.Second - time.Millisecond)
	beat("w-0", protocol.TaskMetrics{Operator: "src", Subtask: 0, RecordsIn: 300, RecordsOut: 100, BytesIn: 5000, BytesOut: 4000})
	h.expectContinue()
	if n := len(h.rec.metricCalls()); n != 1 {
		t.Fatalf("exported again before the interval: %d", n)
	}
	h.advance(time.Millisecond)
	h.expectContinue()
	got = h.rec.metricCalls()
	if len(got) != 2 {
		t.Fatalf("%d exports after one interval, want 2", len(got))
	}
	// src[0] went from 100 to 300 in 2 s; its watermark is now unset, so
	// the lag is src[1]'s: 1 s then, 3 s now.
	if m := got[1]; m.RecordsIn != 450 || m.RecordsInRate != 100 || m.WatermarkLag != 3*time.Second {
		t.Errorf("second export = %+v", m)
	}
	// Bytes in: 1000 → 5000 (src[0]) in 2 s; bytes out: 10 → 4000 (sink[0]
	// reports no more, src[0] now 4000; sink[0]'s 10 stays in the total).
	if m := got[1]; m.BytesInRate != 2000 || m.BytesOutRate != 2000 {
		t.Errorf("bytes rates = %v in, %v out; want 2000 and 2000", m.BytesInRate, m.BytesOutRate)
	}
	if h.c.Metrics() != got[1] {
		t.Errorf("Metrics() = %+v, want the last export", h.c.Metrics())
	}

	// Rates only look back over the window: 10 s of steady 50/s input.
	for range 10 {
		h.advance(2 * time.Second)
		h.c.perTask[0].recordsIn += 100
		h.expectContinue()
	}
	m = h.c.Metrics()
	if math.Abs(m.RecordsInRate-50) > 1e-9 {
		t.Errorf("rate over the window = %v, want 50", m.RecordsInRate)
	}
}

func TestRateOfACounterThatWentBack(t *testing.T) {
	if r := rate(100, 50, 2); r != 0 {
		t.Errorf("rate = %v, want 0", r)
	}
	if r := rate(50, 150, 2); r != 50 {
		t.Errorf("rate = %v, want 50", r)
	}
}

// Over a long window the ring keeps one sample per 32nd of it, and a
// steady rate still reads true.
func TestRatesOverALongWindowKeepFewSamples(t *testing.T) {
	h := newHarness(t, false, withSettings(func(s *Settings) {
		s.MetricsInterval = 2 * time.Second
		s.MetricsWindow = 5 * time.Minute
		s.CheckpointTimeout = time.Hour // the first one stays in flight
	}))
	if n := len(h.c.samples); n != 2+samplesPerWindow {
		t.Fatalf("%d samples kept, want %d", n, 2+samplesPerWindow)
	}
	h.running()
	for i := range 400 { // 800 s at 10 records a second
		if err := h.c.HandleMessage(h.envelope("w-0", &protocol.Heartbeat{Metrics: []protocol.TaskMetrics{
			{Operator: "src", Subtask: 0, RecordsIn: uint64(20 * i)}}})); err != nil {
			t.Fatal(err)
		}
		h.expectContinue()
		h.advance(2 * time.Second)
	}
	got := h.rec.metricCalls()
	if r := got[len(got)-1].RecordsInRate; r != 10 {
		t.Fatalf("rate = %v, want 10", r)
	}
}

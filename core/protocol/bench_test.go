package protocol

import (
	"fmt"
	"testing"
)

// heartbeatEnvelope is a routine heartbeat of a worker running n subtasks.
func heartbeatEnvelope(n int) *Envelope {
	env := &Envelope{V: Version, JobID: "orders-enrich", RunID: 12, WorkerID: "w-3", Seq: 8812, SentAt: sentAt, Heartbeat: &Heartbeat{}}
	for i := range n {
		env.Heartbeat.Metrics = append(env.Heartbeat.Metrics, TaskMetrics{
			Operator: fmt.Sprintf("op-%d", i%4), Subtask: i / 4,
			RecordsIn: 18_234_567, RecordsOut: 18_230_001, BytesIn: 2_345_678_901, BytesOut: 2_001_234_567,
			Backpressure: 0.125, WatermarkMs: 1_772_366_405_123,
		})
	}
	return env
}

func BenchmarkDecodeHeartbeat(b *testing.B) {
	body := mustEncode(b, heartbeatEnvelope(8))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeHeartbeat(b *testing.B) {
	env := heartbeatEnvelope(8)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(env); err != nil {
			b.Fatal(err)
		}
	}
}

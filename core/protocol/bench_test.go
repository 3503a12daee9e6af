package protocol

import (
	"fmt"
	"testing"
)

// heartbeatEnvelope is a routine v2 heartbeat of a worker running n
// subtasks, in the middle of a run: every subtask running, past several
// checkpoints (with restore metadata) and commits.
func heartbeatEnvelope(n int) *Envelope {
	env := &Envelope{V: Version, JobID: "orders-enrich", RunID: 12, WorkerID: "w-3", Seq: 8812, SentAt: sentAt, Slots: 4}
	for i := range n {
		env.Tasks = append(env.Tasks, Task{
			Operator: fmt.Sprintf("op-%d", i%4), Subtask: i / 4, State: Running,
			RecordsIn: 18_234_567, RecordsOut: 18_230_001, BytesIn: 2_345_678_901, BytesOut: 2_001_234_567,
			Backpressure: 0.125, WatermarkMs: 1_772_366_405_123,
			Checkpointed: 1_204, CheckpointBytes: 73_400_320, CheckpointMetadata: fmt.Sprintf("s3://state/orders-enrich/1204/op-%d-%d", i%4, i/4),
			Committed: 1_203,
		})
	}
	return env
}

// heartbeatEnvelopeV1 is the same worker's heartbeat in protocol v1.
func heartbeatEnvelopeV1(n int) *Envelope {
	env := &Envelope{V: V1, JobID: "orders-enrich", RunID: 12, WorkerID: "w-3", Seq: 8812, SentAt: sentAt, Heartbeat: &Heartbeat{}}
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
	for _, c := range []struct {
		name string
		env  *Envelope
	}{{"v2", heartbeatEnvelope(8)}, {"v1", heartbeatEnvelopeV1(8)}} {
		b.Run(c.name, func(b *testing.B) {
			body := mustEncode(b, c.env)
			b.SetBytes(int64(len(body)))
			b.ReportMetric(float64(len(body)), "bytes/envelope")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(body); err != nil {
					b.Fatal(err)
				}
			}
		})
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

package protocol

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/valyala/fastjson"
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
			body := string(mustEncode(b, c.env))
			b.SetBytes(int64(len(body)))
			b.ReportMetric(float64(len(body)), "bytes/envelope")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeString(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecoders measures the candidates side by side on the same v2
// heartbeat, on one core and on all: the encoding/json decoder Decode
// replaced; DecodeString (one hand-written pass, on the body as SQS
// delivers it, a string; Decode copies a []byte once more); and, as lower
// bounds of decoders built on them, jsontext (encoding/json/v2's
// tokenizer) and fastjson only checking or parsing the body, before any
// field is filled or checked. A first version of Decode walked jsontext-checked bytes: the
// check alone cost most of the budget.
func BenchmarkDecoders(b *testing.B) {
	body := mustEncode(b, heartbeatEnvelope(8))
	text := string(body)
	var pool fastjson.ParserPool
	for _, c := range []struct {
		name   string
		decode func([]byte) error
	}{
		{"encoding-json", func(d []byte) error { _, err := decodeReference(d); return err }},
		{"decode", func([]byte) error { _, err := DecodeString(text); return err }},
		{"jsontext-syntax-only", func(d []byte) error {
			dec := jsontextDecoders.Get().(*jsontext.Decoder)
			defer jsontextDecoders.Put(dec)
			dec.Reset(bytes.NewReader(d), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
			_, err := dec.ReadValue()
			return err
		}},
		{"fastjson-parse-only", func(d []byte) error {
			p := pool.Get()
			_, err := p.ParseBytes(d)
			pool.Put(p)
			return err
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.decode(body); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := c.decode(body); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

var jsontextDecoders = sync.Pool{New: func() any { return new(jsontext.Decoder) }}

func BenchmarkEncodeHeartbeat(b *testing.B) {
	env := heartbeatEnvelope(8)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeParts(b *testing.B) {
	body := mustEncode(b, heartbeatEnvelope(8))
	env, _ := Decode(body)
	b.Run("walk", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeJSON(string(body)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("validate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := env.Validate(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

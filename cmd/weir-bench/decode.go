package main

import (
	"testing"

	"github.com/weirstream/weir/core/protocol"
)

// benchDecode measures protocol.Decode of a routine heartbeat as the
// simulated workers send it (8 subtasks' metrics, about 1.4 KB): time and
// allocations per envelope, on one core.
func benchDecode() (ns float64, allocs int64, size int) {
	body := SampleEnvelope()
	if _, err := protocol.Decode(body); err != nil {
		// The simulator's envelopes must be ones the controller accepts.
		panic("the simulator's heartbeat does not decode: " + err.Error())
	}
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := protocol.Decode(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	return float64(r.NsPerOp()), r.AllocsPerOp(), len(body)
}

package main

import (
	"testing"

	"github.com/weirstream/weir/core/protocol"
)

// benchDecode measures the controller's decoding of a routine heartbeat as
// the simulated workers send it (8 subtasks' metrics, about 1.6 KB): time
// and allocations per envelope, on one core. The body is a string, as SQS
// delivers it to the controller.
func benchDecode() (ns float64, allocs int64, size int) {
	body := string(SampleEnvelope())
	if _, err := protocol.DecodeString(body); err != nil {
		// The simulator's envelopes must be ones the controller accepts.
		panic("the simulator's heartbeat does not decode: " + err.Error())
	}
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := protocol.DecodeString(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	return float64(r.NsPerOp()), r.AllocsPerOp(), len(body)
}

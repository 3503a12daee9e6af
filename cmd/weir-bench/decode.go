package main

import (
	"slices"
	"testing"

	"github.com/weirstream/weir/core/protocol"
)

// decodeRuns is how many times the one-core decode is measured: a shared
// machine's noise moves one run by a third, the median of several much less.
const decodeRuns = 7

// benchDecode measures the controller's decoding of a routine heartbeat as
// the simulated workers send it (8 subtasks' metrics, about 1.6 KB): time
// and allocations per envelope on one core (the median of decodeRuns runs,
// and their range), and the time per envelope with every core decoding, as
// the controller's receive loops do. The body is a string, as SQS delivers
// it to the controller.
func benchDecode(rep *Report) {
	body := string(SampleEnvelope())
	if _, err := protocol.DecodeString(body); err != nil {
		// The simulator's envelopes must be ones the controller accepts.
		panic("the simulator's heartbeat does not decode: " + err.Error())
	}
	ns := make([]float64, decodeRuns)
	for i := range ns {
		r := testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := protocol.DecodeString(body); err != nil {
					b.Fatal(err)
				}
			}
		})
		ns[i] = float64(r.T.Nanoseconds()) / float64(r.N)
		rep.DecodeAllocs = r.AllocsPerOp()
	}
	slices.Sort(ns)
	rep.DecodeNs, rep.DecodeNsMin, rep.DecodeNsMax = ns[len(ns)/2], ns[0], ns[len(ns)-1]
	r := testing.Benchmark(func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := protocol.DecodeString(body); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	rep.DecodeParallelNs = float64(r.T.Nanoseconds()) / float64(r.N)
	rep.DecodeBytes = len(body)
}

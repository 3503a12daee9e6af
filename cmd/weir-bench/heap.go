package main

import (
	"math"
	"runtime"
	"strings"
)

// memProfileRate samples one allocation per this many bytes: fine enough
// to attribute the controller's heap to the code that allocated it.
const memProfileRate = 16 * 1024

// controllerHeap estimates the live heap the controller holds: bytes
// allocated from the controller's own code (core/manager, core/state,
// core/controller, core/protocol, core/telemetry) that are still live,
// leaving out what the in-memory store, the in-memory queue and the
// simulated workers hold (DynamoDB, SQS and the workers in production),
// and anything allocated through them. It reads the runtime's heap
// profile, scaled for sampling as pprof scales it; call runtime.GC first.
func controllerHeap() float64 {
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs = make([]runtime.MemProfileRecord, n+50)
		var ok bool
		n, ok = runtime.MemProfile(recs, true)
		if ok {
			recs = recs[:n]
			break
		}
	}
	rate := float64(runtime.MemProfileRate)
	total := 0.0
	for i := range recs {
		r := &recs[i]
		if r.InUseBytes() == 0 || !ownedByController(r.Stack()) {
			continue
		}
		scale := 1.0
		if r.AllocObjects > 0 && rate > 1 {
			avg := float64(r.AllocBytes) / float64(r.AllocObjects)
			scale = 1 / (1 - math.Exp(-avg/rate))
		}
		total += float64(r.InUseBytes()) * scale
	}
	return total
}

// ownedByController: a frame of the controller's packages is on the
// stack, and none of the ports' in-memory stand-ins or of the simulator.
func ownedByController(stack []uintptr) bool {
	var fns []string
	frames := runtime.CallersFrames(stack)
	for {
		f, more := frames.Next()
		fns = append(fns, f.Function)
		if !more {
			return ownedBy(fns)
		}
	}
}

// ownedBy judges a stack given as function names, innermost first.
func ownedBy(fns []string) bool {
	owned := false
	for _, fn := range fns {
		switch {
		case strings.Contains(fn, "/core/store/memstore."), strings.Contains(fn, "/core/inbox/meminbox."),
			strings.HasPrefix(fn, "main."):
			return false
		case strings.Contains(fn, "/core/manager."), strings.Contains(fn, "/core/state."),
			strings.Contains(fn, "/core/controller."), strings.Contains(fn, "/core/protocol."),
			strings.Contains(fn, "/core/telemetry"):
			owned = true
		}
	}
	return owned
}

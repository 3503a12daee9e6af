package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/store/memstore"
)

// captured keeps what the simulated workers send.
type captured struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (c *captured) Send(body []byte) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bodies = append(c.bodies, body)
	return ""
}

func (c *captured) take() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.bodies
	c.bodies = nil
	return b
}

// The controller must accept every envelope the simulator sends, or the
// benchmark measures dead-lettering instead of handling.
func TestSimulatedWorkersSendEnvelopesTheControllerAccepts(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	ids, err := seed(ctx, mem, 2, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	out := &captured{}
	sim := NewSim(mem, out, ids, 200*time.Millisecond, 50*time.Millisecond, 1, 1)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { sim.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	// A checkpoint asked for in the command record, a failure, and a new
	// run: every kind of envelope the simulator sends.
	cmds, err := mem.GetCommands(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	cmds.Checkpoint = &job.CheckpointCommand{Epoch: 3}
	if _, err := mem.PutCommands(ctx, 1, cmds); err != nil {
		t.Fatal(err)
	}
	sim.Fail(ids[0])
	sim.OnStart(fleet.Request{JobID: ids[1], RunID: 2})

	var failed, checkpointed, run2 int
	heard := map[string]int{}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && (failed == 0 || checkpointed < subtasksPerJob-1 || run2 < workersPerJob || len(heard) < 2*workersPerJob) {
		time.Sleep(20 * time.Millisecond)
		for _, b := range out.take() {
			env, err := protocol.Decode(b)
			if err != nil {
				t.Fatalf("envelope refused: %v\n%s", err, b)
			}
			heard[string(env.JobID)+"/"+env.WorkerID]++
			if env.RunID == 2 && env.Slots == slotsPerWorker {
				run2++
			}
			for _, task := range env.Tasks {
				switch {
				case task.State == protocol.Failed:
					failed++
				case env.JobID == ids[0] && task.Checkpointed == 3:
					checkpointed++
				}
			}
		}
	}
	if failed == 0 {
		t.Error("no failed task reported")
	}
	if checkpointed < subtasksPerJob-1 {
		t.Errorf("%d subtasks reported checkpoint 3, want all %d but the failed one", checkpointed, subtasksPerJob-1)
	}
	if run2 < workersPerJob {
		t.Errorf("%d envelopes of run 2 offering slots, want one per worker", run2)
	}
	if len(heard) != 2*workersPerJob {
		t.Errorf("%d workers heard from, want %d", len(heard), 2*workersPerJob)
	}
}

func TestSampleEnvelopeIsARoutineHeartbeatOfAbout1600Bytes(t *testing.T) {
	b := SampleEnvelope()
	env, err := protocol.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(env.Tasks); n != slotsPerWorker || len(env.Events) != 0 {
		t.Fatalf("%d tasks and %d events, want %d and none", n, len(env.Events), slotsPerWorker)
	}
	if len(b) < 1400 || len(b) > 1800 {
		t.Fatalf("sample envelope is %d bytes, want about 1.6 KB", len(b))
	}
}

func TestHistogramQuantiles(t *testing.T) {
	h := newHist()
	for i := 1; i <= 100; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	h.add(3 * time.Second)
	if got := h.quantileMs(0.5); got < 50 || got > 51.1 {
		t.Errorf("p50 = %.1f ms, want about 51", got)
	}
	if got := h.quantileMs(0.99); got < 99 || got > 100.1 {
		t.Errorf("p99 = %.1f ms, want about 100", got)
	}
	if got := h.maxMs(); got != 3000 {
		t.Errorf("max = %.1f ms, want 3000", got)
	}
	h.reset()
	if h.count() != 0 || h.quantileMs(0.99) != 0 {
		t.Error("reset left samples behind")
	}
}

// The cost model runs the worker SDK as it is: its sends and reads are
// what the protocol's rules and the SDK's read schedule make of each
// checkpoint interval, and checkpoints still reach the program promptly.
func TestWorkerRatesRunTheSDKsSchedule(t *testing.T) {
	for _, c := range []struct {
		interval     time.Duration
		sends, reads float64 // most per worker-minute
		minReads     float64 // at least one read per 10 s
	}{
		// Three heartbeats a minute; a checkpoint's completion takes one's
		// place. Reads: one per 10 s, the last of each minute the one that
		// sees the checkpoint.
		{60 * time.Second, 3.1, 7, 6},
		// A completion every 10 s, no heartbeat falls due; about one read
		// per checkpoint, a second when the controller started it late.
		{10 * time.Second, 6.1, 8.5, 6},
	} {
		r, err := workerRates(c.interval)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s checkpoints: %+v", c.interval, r)
		if r.SendsPerMinute > c.sends || r.ReadsPerMinute > c.reads || r.ReadsPerMinute < c.minReads {
			t.Errorf("%s checkpoints: %.2f sends and %.2f reads per worker-minute; want at most %.1f sends and %.1f to %.1f reads",
				c.interval, r.SendsPerMinute, r.ReadsPerMinute, c.sends, c.minReads, c.reads)
		}
		if r.CheckpointStartLagMs <= 0 || r.CheckpointStartLagMs > 1000 {
			t.Errorf("%s checkpoints: a checkpoint reached the program %.0f ms after it was written on average; want within a second",
				c.interval, r.CheckpointStartLagMs)
		}
	}
}

func TestControllerHeapLeavesOutThePortsAndTheSimulator(t *testing.T) {
	for _, c := range []struct {
		stack []string
		want  bool
	}{
		{[]string{"github.com/weirstream/weir/core/controller.New", "github.com/weirstream/weir/core/state.(*Machine).Start"}, true},
		{[]string{"slices.Clone", "github.com/weirstream/weir/core/store/memstore.cloneStatus", "github.com/weirstream/weir/core/state.(*Machine).persist"}, false},
		{[]string{"main.(*shard).send"}, false},
		{[]string{"encoding/json.Marshal", "main.(*slowStore).size", "github.com/weirstream/weir/core/state.(*Machine).persist"}, false},
		{[]string{"runtime.malg"}, false},
	} {
		if got := ownedBy(c.stack); got != c.want {
			t.Errorf("%s: owned = %v, want %v", strings.Join(c.stack, " < "), got, c.want)
		}
	}
}

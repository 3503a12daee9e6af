package protocol_test

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/core/protocol"
)

// A worker's sending loop, driven here by hand: the first envelope goes at
// once, informational news waits for the heartbeat, and a checkpoint
// completion brings the next envelope forward by no more than the linger.
func ExampleBuilder() {
	b, err := protocol.NewBuilder("orders-enrich", 3, "w-0", protocol.BuilderOptions{})
	if err != nil {
		panic(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	send := func(now time.Time) {
		bodies, err := b.Flush(now)
		if err != nil {
			panic(err)
		}
		for _, body := range bodies {
			fmt.Println(string(body)) // in a worker: sqs SendMessage to the worker queue
		}
	}

	_ = b.Add(t0, protocol.Event{Kind: protocol.WorkerRegistered, Slots: 2})
	send(t0)

	_ = b.Add(t0.Add(time.Second), protocol.Event{Kind: protocol.CheckpointEvent, Operator: "source", Epoch: 1, Phase: protocol.PhaseCheckpointStarted})
	fmt.Println("due", b.Due().Sub(t0))
	_ = b.Add(t0.Add(2*time.Second), protocol.Event{Kind: protocol.CheckpointCompleted, Operator: "source", Epoch: 1, Bytes: 512})
	fmt.Println("due", b.Due().Sub(t0))
	_ = b.SetMetrics(protocol.TaskMetrics{Operator: "source", RecordsIn: 100, RecordsOut: 100})
	send(b.Due())

	// Output:
	// {"v":1,"job":"orders-enrich","run":3,"worker":"w-0","seq":1,"sent_at":"2026-03-01T12:00:00Z","heartbeat":{},"events":[{"kind":"worker_registered","subtask":0,"slots":2}]}
	// due 5s
	// due 2.1s
	// {"v":1,"job":"orders-enrich","run":3,"worker":"w-0","seq":2,"sent_at":"2026-03-01T12:00:02.1Z","heartbeat":{"metrics":[{"op":"source","subtask":0,"records_in":100,"records_out":100,"bytes_in":0,"bytes_out":0,"backpressure":0}]},"events":[{"kind":"checkpoint_event","op":"source","subtask":0,"epoch":1,"phase":"checkpoint_started"},{"kind":"checkpoint_completed","op":"source","subtask":0,"epoch":1,"bytes":512}]}
}

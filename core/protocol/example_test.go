package protocol_test

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/core/protocol"
)

// A worker's sending loop, driven here by hand: the first envelope goes at
// once and registers the worker, new counters and informational events wait
// for the heartbeat, and a checkpoint completion brings the next envelope
// forward by no more than the linger.
func ExampleBuilder() {
	b, err := protocol.NewBuilder("orders-enrich", 3, "w-0", 2, protocol.BuilderOptions{})
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

	send(t0)

	_ = b.SetTask(t0.Add(time.Second), protocol.Task{Operator: "source", State: protocol.Running, RecordsIn: 40, RecordsOut: 40})
	_ = b.Add(protocol.Event{Kind: protocol.CheckpointEvent, Operator: "source", Epoch: 1, Phase: protocol.PhaseCheckpointStarted})
	fmt.Println("due", b.Due().Sub(t0))
	_ = b.SetTask(t0.Add(2*time.Second), protocol.Task{Operator: "source", State: protocol.Running, RecordsIn: 100, RecordsOut: 100,
		Checkpointed: 1, CheckpointBytes: 512})
	fmt.Println("due", b.Due().Sub(t0))
	send(b.Due())

	// Output:
	// {"v":2,"job":"orders-enrich","run":3,"worker":"w-0","seq":1,"sent_at":"2026-03-01T12:00:00Z","slots":2}
	// due 1.1s
	// due 1.1s
	// {"v":2,"job":"orders-enrich","run":3,"worker":"w-0","seq":2,"sent_at":"2026-03-01T12:00:01.1Z","slots":2,"tasks":[{"op":"source","subtask":0,"state":"running","records_in":100,"records_out":100,"checkpointed":1,"checkpoint_bytes":512}],"events":[{"kind":"checkpoint_event","op":"source","subtask":0,"epoch":1,"phase":"checkpoint_started"}]}
}

// Package inbox declares the port through which worker messages reach the
// controller: at-least-once, unordered, in batches.
package inbox

import (
	"context"
	"time"
)

// Delivery is one message as received. Handle is opaque to the core; the
// adapter uses it to acknowledge or reject the message.
type Delivery struct {
	ID     string
	Body   string // as SQS carries it: decoded without a copy
	Handle string
	// Receives counts how often this message has been delivered (1 first).
	Receives int
}

// Inbox hands out worker messages across all jobs.
type Inbox interface {
	// Receive waits until messages are available or ctx ends, and returns a
	// batch (at most MaxBatch). An empty batch with a nil error is allowed.
	Receive(ctx context.Context) ([]Delivery, error)
	// Ack removes handled messages for good.
	Ack(ctx context.Context, ds []Delivery) error
	// Reject hands back messages that can never be handled; the adapter
	// leaves them to be dead-lettered (on SQS: visible again at once, so the
	// redrive policy moves them on a later receive).
	Reject(ctx context.Context, ds []Delivery) error
	// Release hands back messages the controller could not take now (their
	// job's mailbox is full), undecided: they are delivered again after a
	// short delay. Every delivery counts toward the redrive limit, as on
	// SQS.
	Release(ctx context.Context, ds []Delivery) error
}

// Runner is implemented by inboxes whose receiving needs goroutines of
// their own (the SQS inbox's long polls). The manager runs it for exactly
// the length of a tenure as leader, so a standby holds no message
// invisible. Run returns once every goroutine it started has ended.
type Runner interface {
	Run(ctx context.Context) error
}

// ReleaseDelay is how long a released message stays hidden before it is
// delivered again.
const ReleaseDelay = 5 * time.Second

// MaxBatch is the most messages one Receive returns (SQS's own limit).
const MaxBatch = 10

package sqs_test

import (
	"context"
	"testing"

	"github.com/weirstream/weir/infra/accounting"
	"github.com/weirstream/weir/infra/sqs"
)

// BenchmarkRoundTrip sends b.N envelopes with PublishBatch, consumes them
// with the inbox and acks each Receive's batch as the controller does, and
// reports the SQS requests billed per message and the price of a million
// messages at us-east-1 list prices. Run it against the emulator:
//
//	WEIR_INTEGRATION=1 go test -run '^$' -bench RoundTrip ./infra/sqs
func BenchmarkRoundTrip(b *testing.B) {
	q := newQueues(b, nil)
	ctx := context.Background()
	pub := q.publisher(b)
	in, err := sqs.NewInbox(q.client, q.url, sqs.InboxOptions{})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- in.Run(runCtx) }()
	defer func() {
		stop()
		<-done
	}()

	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = envelope(b, uint64(i+1))
	}
	q.ledger.Reset()
	b.ResetTimer()
	const chunk = 100 // what a busy fleet might send between two receives
	for start := 0; start < len(bodies); start += chunk {
		if err := pub.PublishBatch(ctx, bodies[start:min(start+chunk, len(bodies))]); err != nil {
			b.Fatal(err)
		}
	}
	for got := 0; got < b.N; {
		ds, err := in.Receive(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := in.Ack(ctx, ds); err != nil {
			b.Fatal(err)
		}
		got += len(ds)
	}
	b.StopTimer()

	e := q.ledger.Estimate(accounting.USEast1)
	b.ReportMetric(float64(e.SQSRequests)/float64(b.N), "requests/msg")
	b.ReportMetric(e.SQS/float64(b.N)*1e6, "$/M-msgs")
	if b.N >= 1000 {
		b.Logf("\n%s", q.ledger.Table())
	}
}

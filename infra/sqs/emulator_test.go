package sqs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/middleware"
	"go.uber.org/goleak"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/inbox"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/infra/accounting"
	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/resources/resourcestest"
	"github.com/weirstream/weir/infra/sqs"
)

// queues is a test's copy of the template's worker queue and its
// dead-letter queue, with a client that reports to a ledger and one that
// does not (for the test's own look-ups).
type queues struct {
	cfg      aws.Config
	ledger   *accounting.Ledger
	client   *awssqs.Client
	raw      *awssqs.Client
	url, dlq string
}

func newQueues(t testing.TB, params map[string]string) queues {
	t.Helper()
	cfg := awstest.Config(t)
	env := resourcestest.ForTestWithParameters(t, cfg, params).Env()
	l, err := accounting.NewLedger()
	if err != nil {
		t.Fatal(err)
	}
	return queues{
		cfg:    cfg,
		ledger: l,
		client: awssqs.NewFromConfig(l.Instrument(cfg)),
		raw:    awssqs.NewFromConfig(cfg),
		url:    env[resources.EnvWorkerQueueURL],
		dlq:    env[resources.EnvWorkerDLQURL],
	}
}

func (q queues) calls(op string) int64 {
	return q.ledger.Snapshot()[accounting.Key{Service: "SQS", Operation: op}]
}

// counts returns the queue's visible and in-flight message counts (exact on
// the emulator).
func (q queues) counts(t *testing.T, url string) (visible, inFlight int) {
	t.Helper()
	out, err := q.raw.GetQueueAttributes(context.Background(), &awssqs.GetQueueAttributesInput{
		QueueUrl: &url,
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight
}

func (q queues) publisher(t testing.TB) *sqs.Publisher {
	t.Helper()
	p, err := sqs.NewPublisher(q.client, q.url, sqs.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// run starts an inbox and stops it when the test ends.
func (q queues) run(t *testing.T, opts sqs.InboxOptions) *sqs.Inbox {
	t.Helper()
	in, err := sqs.NewInbox(q.client, q.url, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return in
}

// receiveN collects n deliveries, failing the test after timeout.
func receiveN(t *testing.T, in *sqs.Inbox, n int, timeout time.Duration) []inbox.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var got []inbox.Delivery
	for len(got) < n {
		ds, err := in.Receive(ctx)
		if err != nil {
			t.Fatalf("received %d of %d messages: %v", len(got), n, err)
		}
		if len(ds) > inbox.MaxBatch {
			t.Fatalf("Receive returned %d messages, more than MaxBatch", len(ds))
		}
		got = append(got, ds...)
	}
	return got
}

func envelope(t testing.TB, seq uint64) []byte {
	t.Helper()
	b, err := protocol.Encode(&protocol.Envelope{
		V: protocol.V1, JobID: "job-1", RunID: 1, WorkerID: "worker-1", Seq: seq,
		SentAt: time.Now(), Heartbeat: &protocol.Heartbeat{},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDuplicatesAreDeliveredAndAckedWithoutHarm(t *testing.T) {
	q := newQueues(t, nil)
	ctx := context.Background()
	pub := q.publisher(t)

	// SQS itself delivering one message twice: someone receives it, its
	// visibility runs out, and the inbox receives it again.
	redelivered := envelope(t, 2)
	if err := pub.Publish(ctx, redelivered); err != nil {
		t.Fatal(err)
	}
	first, err := q.raw.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: &q.url, VisibilityTimeout: 1, WaitTimeSeconds: 5})
	if err != nil || len(first.Messages) != 1 {
		t.Fatalf("raw receive: %v, %d messages", err, len(first.Messages))
	}
	// A worker that retried a send it thought had failed: the same body
	// twice, as two messages.
	body := envelope(t, 1)
	if err := pub.PublishBatch(ctx, [][]byte{body, body}); err != nil {
		t.Fatal(err)
	}

	in := q.run(t, sqs.InboxOptions{})
	var dupes []inbox.Delivery
	var again inbox.Delivery
	for _, d := range receiveN(t, in, 3, 10*time.Second) {
		switch {
		case d.Body == string(body):
			dupes = append(dupes, d)
		case d.Body == string(redelivered):
			again = d
		default:
			t.Fatalf("unexpected delivery %+v", d)
		}
	}
	if len(dupes) != 2 || dupes[0].ID == dupes[1].ID {
		t.Fatalf("duplicates = %+v, want two messages with the same body", dupes)
	}
	if again.ID != aws.ToString(first.Messages[0].MessageId) || again.Receives != 2 {
		t.Fatalf("redelivery = %+v, want message %s on its second receive", again, aws.ToString(first.Messages[0].MessageId))
	}

	if err := in.Ack(ctx, dupes); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	// Acking again (say, after a retried handler) changes nothing.
	if err := in.Ack(ctx, append(dupes, dupes...)); err != nil {
		t.Fatalf("second Ack: %v", err)
	}
	// Both receipts of the redelivered message, the stale one included.
	stale := inbox.Delivery{ID: again.ID, Body: again.Body, Handle: aws.ToString(first.Messages[0].ReceiptHandle), Receives: 1}
	if err := in.Ack(ctx, []inbox.Delivery{stale, again}); err != nil {
		t.Fatalf("Ack of both receipts: %v", err)
	}
	if visible, inFlight := q.counts(t, q.url); visible+inFlight != 0 {
		t.Fatalf("queue holds %d visible and %d in-flight messages after every ack", visible, inFlight)
	}
	if in.Held() != 0 {
		t.Fatalf("inbox still holds %d messages after acking all", in.Held())
	}
}

func TestRejectedMessagesReachTheDeadLetterQueue(t *testing.T) {
	const maxReceives = 2
	q := newQueues(t, map[string]string{"WorkerMaxReceiveCount": strconv.Itoa(maxReceives)})
	ctx := context.Background()
	var logs syncBuffer
	in := q.run(t, sqs.InboxOptions{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})

	malformed := [][]byte{
		[]byte("not json at all"),
		[]byte(`{"v":2,"job":"job-1"}`),
		[]byte(`{"v":1,"job":"job-1","run":1,"worker":"w","seq":1,"sent_at":"2024-01-01T00:00:00Z","heartbeat":{},"surprise":true}`),
	}
	var valid [][]byte
	for i := range 5 {
		valid = append(valid, envelope(t, uint64(i+1)))
	}
	pub := q.publisher(t)
	if err := pub.PublishBatch(ctx, append(slices.Clone(malformed), valid...)); err != nil {
		t.Fatal(err)
	}

	// The controller's loop, in miniature: decode, ack what is good,
	// reject what can never be handled.
	loopCtx, stop := context.WithCancel(ctx)
	defer stop()
	var mu sync.Mutex
	acked := map[uint64]bool{}
	rejected := map[string]int{} // body → highest receive count seen
	loopDone := make(chan error, 1)
	go func() {
		for {
			ds, err := in.Receive(loopCtx)
			if err != nil {
				loopDone <- nil
				return
			}
			var good, bad []inbox.Delivery
			mu.Lock()
			for _, d := range ds {
				env, err := protocol.DecodeString(d.Body)
				if err != nil {
					bad = append(bad, d)
					rejected[d.Body] = max(rejected[d.Body], d.Receives)
					continue
				}
				acked[env.Seq] = true
				good = append(good, d)
			}
			mu.Unlock()
			if err := in.Reject(loopCtx, bad); err != nil && loopCtx.Err() == nil {
				loopDone <- fmt.Errorf("Reject: %w", err)
				return
			}
			if err := in.Ack(loopCtx, good); err != nil && loopCtx.Err() == nil {
				loopDone <- fmt.Errorf("Ack: %w", err)
				return
			}
		}
	}()

	// Read the dead-letter queue until every malformed message is there.
	inDLQ := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(inDLQ) < len(malformed) {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s the DLQ holds %d of %d malformed messages", len(inDLQ), len(malformed))
		}
		out, err := q.raw.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: &q.dlq, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			inDLQ[aws.ToString(m.Body)] = true
		}
	}
	for _, b := range malformed {
		if !inDLQ[string(b)] {
			t.Errorf("malformed message %q is not in the DLQ", b)
		}
	}

	// The loop kept going: messages sent after the bad ones are handled.
	var later [][]byte
	for i := range 4 {
		later = append(later, envelope(t, uint64(100+i)))
	}
	if err := pub.PublishBatch(ctx, later); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) == len(valid)+len(later)
	}, "every valid message to be acked")
	stop()
	if err := <-loopDone; err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	for body, receives := range rejected {
		if receives != maxReceives {
			t.Errorf("malformed %q was last received %d times, want %d (maxReceiveCount)", body, receives, maxReceives)
		}
	}
	// One log line per rejection, naming the message and its receive count.
	lines := 0
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if strings.Contains(rec["msg"].(string), "rejected") {
			lines++
			if rec["message_id"] == "" || rec["message_id"] == nil || rec["receives"] == nil {
				t.Errorf("rejection log line lacks the message id or receive count: %s", line)
			}
		}
	}
	if want := len(malformed) * maxReceives; lines != want {
		t.Errorf("%d rejection log lines, want %d (one per reject)", lines, want)
	}
}

func TestAckDeletesMoreThanTenInBatchesOfTen(t *testing.T) {
	q := newQueues(t, nil)
	ctx := context.Background()
	const n = 25
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = envelope(t, uint64(i+1))
	}
	if err := q.publisher(t).PublishBatch(ctx, bodies); err != nil {
		t.Fatal(err)
	}
	in := q.run(t, sqs.InboxOptions{})
	ds := receiveN(t, in, n, 20*time.Second)
	before := q.calls("DeleteMessageBatch")
	if err := in.Ack(ctx, ds); err != nil {
		t.Fatalf("Ack of %d: %v", n, err)
	}
	if got := q.calls("DeleteMessageBatch") - before; got != 3 {
		t.Fatalf("%d DeleteMessageBatch calls for %d messages, want 3", got, n)
	}
	if visible, inFlight := q.counts(t, q.url); visible+inFlight != 0 {
		t.Fatalf("queue holds %d visible and %d in-flight messages after acking all", visible, inFlight)
	}
}

func TestAckReportsEachFailedEntry(t *testing.T) {
	q := newQueues(t, nil)
	in, err := sqs.NewInbox(q.client, q.url, sqs.InboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ds := []inbox.Delivery{{ID: "m-1", Handle: "not-a-receipt-handle", Receives: 1}}
	err = in.Ack(context.Background(), ds)
	var be *sqs.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || be.Failed[0].MessageID != "m-1" || be.Failed[0].Code != "ReceiptHandleIsInvalid" {
		t.Fatalf("Ack of a bad handle = %v, want a BatchError naming m-1 and ReceiptHandleIsInvalid", err)
	}
	if q.calls("DeleteMessageBatch") != 1 {
		t.Fatalf("a failure caused by the request was retried: %d calls", q.calls("DeleteMessageBatch"))
	}
}

func TestExtensionKeepsASlowMessageFromRedelivery(t *testing.T) {
	q := newQueues(t, nil)
	ctx := context.Background()
	if err := q.publisher(t).PublishBatch(ctx, [][]byte{envelope(t, 1), envelope(t, 2)}); err != nil {
		t.Fatal(err)
	}
	// The control: one message received without the inbox, with the same
	// short visibility timeout and nobody to extend it.
	const visibility = 3 * time.Second
	ctl, err := q.raw.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: &q.url, MaxNumberOfMessages: 1, VisibilityTimeout: int32(visibility / time.Second), WaitTimeSeconds: 5})
	if err != nil || len(ctl.Messages) != 1 {
		t.Fatalf("raw receive: %v, %d messages", err, len(ctl.Messages))
	}
	control := aws.ToString(ctl.Messages[0].MessageId)

	// Extending early leaves room for a loaded emulator to answer late.
	in := q.run(t, sqs.InboxOptions{Receivers: 1, VisibilityTimeout: visibility, ExtendAfter: 0.2, MaxHold: time.Minute})
	slow := receiveN(t, in, 1, 10*time.Second)[0]
	if slow.ID == control {
		t.Fatal("the inbox received the control message while it was invisible")
	}
	// Hold the slow message for more than twice its visibility timeout.
	// The control comes back; the slow one must not.
	held := time.Now()
	ds := receiveN(t, in, 1, 10*time.Second)
	if len(ds) != 1 || ds[0].ID != control || ds[0].Receives != 2 {
		t.Fatalf("got %+v, want only the control message %s back on its second receive", ds, control)
	}
	rest, cancel := context.WithDeadline(ctx, held.Add(2*visibility+time.Second))
	defer cancel()
	if more, err := in.Receive(rest); err == nil {
		t.Fatalf("received %+v while holding the slow message; it was not kept invisible", more)
	}
	if q.calls("ChangeMessageVisibilityBatch") == 0 {
		t.Fatal("no visibility extension was sent")
	}
	if err := in.Ack(ctx, append(ds, slow)); err != nil {
		t.Fatal(err)
	}
	if visible, inFlight := q.counts(t, q.url); visible+inFlight != 0 {
		t.Fatalf("queue holds %d visible and %d in-flight messages after acking all", visible, inFlight)
	}
}

func TestMaxHoldLetsAForgottenMessageGo(t *testing.T) {
	q := newQueues(t, nil)
	ctx := context.Background()
	if err := q.publisher(t).Publish(ctx, envelope(t, 1)); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	in := q.run(t, sqs.InboxOptions{
		Receivers: 1, VisibilityTimeout: 2 * time.Second, ExtendAfter: 0.2, MaxHold: 3 * time.Second,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	first := receiveN(t, in, 1, 10*time.Second)[0]
	again := receiveN(t, in, 1, 15*time.Second)[0]
	if again.ID != first.ID || again.Receives != first.Receives+1 {
		t.Fatalf("got %+v after %+v, want the same message redelivered once MaxHold passed", again, first)
	}
	if !strings.Contains(logs.String(), "held too long") || !strings.Contains(logs.String(), first.ID) {
		t.Fatalf("giving up on the message was not logged with its id: %s", logs.String())
	}
	if err := in.Ack(ctx, []inbox.Delivery{again}); err != nil {
		t.Fatal(err)
	}
}

func TestPublisherBatchesAndRefusesOversizeMessagesWithoutCallingAWS(t *testing.T) {
	q := newQueues(t, nil)
	ctx := context.Background()
	pub := q.publisher(t)

	oversize := bytes.Repeat([]byte("x"), protocol.MaxEnvelopeBytes+1)
	if err := pub.Publish(ctx, oversize); !errors.Is(err, sqs.ErrMessageTooLarge) {
		t.Fatalf("Publish of %d bytes = %v, want ErrMessageTooLarge", len(oversize), err)
	}
	if err := pub.PublishBatch(ctx, [][]byte{envelope(t, 1), oversize, envelope(t, 2)}); !errors.Is(err, sqs.ErrMessageTooLarge) || !strings.Contains(err.Error(), "message 1 of 3") {
		t.Fatalf("PublishBatch with an oversize message = %v, want ErrMessageTooLarge naming message 1 of 3", err)
	}
	if calls := q.ledger.Snapshot(); len(calls) != 0 {
		t.Fatalf("refused messages still cost AWS calls: %v", calls)
	}

	for _, n := range []int{1, 10, 11, 23} {
		q.ledger.Reset()
		bodies := make([][]byte, n)
		for i := range bodies {
			bodies[i] = envelope(t, uint64(i+1))
		}
		if err := pub.PublishBatch(ctx, bodies); err != nil {
			t.Fatal(err)
		}
		want := map[accounting.Key]int64{{Service: "SQS", Operation: "SendMessageBatch"}: int64((n + 9) / 10)}
		if got := q.ledger.Snapshot(); !equalCounts(got, want) {
			t.Errorf("%d messages cost %v, want %v", n, got, want)
		}
	}
	if visible, _ := q.counts(t, q.url); visible != 1+10+11+23 {
		t.Fatalf("queue holds %d messages, want %d", visible, 1+10+11+23)
	}
}

func equalCounts(a, b map[accounting.Key]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestReceiveEndsOnCancelAndRunLeavesNoGoroutines(t *testing.T) {
	q := newQueues(t, nil)
	defer goleak.VerifyNone(t,
		goleak.IgnoreCurrent(),
		// Idle keep-alive connections of the SDK's HTTP client.
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	)
	// Count long polls as they start, to cancel in the middle of one.
	var polling atomic.Int64
	client := awssqs.NewFromConfig(q.cfg, func(o *awssqs.Options) {
		o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
			return s.Finalize.Add(middleware.FinalizeMiddlewareFunc("test.polling", func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				if middleware.GetOperationName(ctx) == "ReceiveMessage" {
					polling.Add(1)
				}
				return next.HandleFinalize(ctx, in)
			}), middleware.After)
		})
	})
	in, err := sqs.NewInbox(client, q.url, sqs.InboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- in.Run(runCtx) }()

	// Receive waits on an empty queue (the long poll is 20 s) until its
	// context ends.
	ctx, cancel := context.WithCancel(context.Background())
	received := make(chan error, 1)
	go func() {
		_, err := in.Receive(ctx)
		received <- err
	}()
	waitFor(t, 10*time.Second, func() bool { return polling.Load() > 0 }, "the first long poll to start")
	cancel()
	select {
	case err := <-received:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Receive after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Receive did not return within 5 s of its context being cancelled")
	}

	// Run stops in the middle of a long poll.
	stopRun()
	select {
	case err := <-runDone:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5 s of its context being cancelled")
	}
}

// oneMessageInbox publishes one envelope and starts an inbox with one
// receiver; stop ends its Run and returns what Run returned.
func oneMessageInbox(t *testing.T, q queues) (in *sqs.Inbox, runCtx context.Context, stop func() error) {
	t.Helper()
	ctx := context.Background()
	if err := q.publisher(t).Publish(ctx, envelope(t, 1)); err != nil {
		t.Fatal(err)
	}
	in, err := sqs.NewInbox(q.client, q.url, sqs.InboxOptions{Receivers: 1})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- in.Run(runCtx) }()
	return in, runCtx, func() error { cancel(); return <-done }
}

func TestStoppingGivesBackMessagesNotYetHandedOut(t *testing.T) {
	q := newQueues(t, nil)
	in, runCtx, stop := oneMessageInbox(t, q)
	// The receiver holds the message, waiting for a Receive that never
	// comes.
	waitFor(t, 10*time.Second, func() bool { return in.Held() == 1 }, "the message to be received")
	if err := in.Run(runCtx); err == nil {
		t.Fatal("a second Run of the same inbox was accepted")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if visible, inFlight := q.counts(t, q.url); visible != 1 || inFlight != 0 {
		t.Fatalf("after stopping, %d visible and %d in-flight messages; want the message visible again at once", visible, inFlight)
	}
}

// A message handed out but never settled when Run ends (its tenure ended
// before the job acknowledged it) is visible again at once, and a second
// Run of the same inbox does not keep it hidden.
func TestStoppingGivesBackMessagesHandedOutButNotSettled(t *testing.T) {
	q := newQueues(t, nil)
	in, _, stop := oneMessageInbox(t, q)
	rctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	ds, err := in.Receive(rctx)
	cancel()
	if err != nil || len(ds) != 1 {
		t.Fatalf("Receive = %d messages, %v; want the one sent", len(ds), err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if in.Held() != 0 {
		t.Fatalf("%d messages still held after Run ended", in.Held())
	}
	if visible, inFlight := q.counts(t, q.url); visible != 1 || inFlight != 0 {
		t.Fatalf("after stopping, %d visible and %d in-flight messages; want the unsettled message visible again at once", visible, inFlight)
	}
}

func TestReceiveBacksOffOnErrorsAndRecovers(t *testing.T) {
	cfg := awstest.Config(t)
	path, err := resourcestest.TemplatePath()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := resources.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ddb, raw := dynamodb.NewFromConfig(cfg), awssqs.NewFromConfig(cfg)
	opts := resources.Options{StackName: awstest.Name(t, "t-backoff")}
	stack, err := tmpl.Create(ctx, ddb, raw, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stack.Delete(context.Background(), ddb, raw); err != nil {
			t.Errorf("delete stack: %v", err)
		}
	})
	url := stack.Env()[resources.EnvWorkerQueueURL]
	// The queue disappears: every receive fails until it is back.
	if err := stack.Delete(ctx, ddb, raw); err != nil {
		t.Fatal(err)
	}

	l, err := accounting.NewLedger()
	if err != nil {
		t.Fatal(err)
	}
	client := awssqs.NewFromConfig(l.Instrument(cfg))
	receives := func() int64 { return l.Snapshot()[accounting.Key{Service: "SQS", Operation: "ReceiveMessage"}] }
	fake := clock.NewFake(time.Unix(0, 0))
	var logs syncBuffer
	in, err := sqs.NewInbox(client, url, sqs.InboxOptions{
		Receivers: 1, Clock: fake, MinBackoff: time.Second, MaxBackoff: 8 * time.Second,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- in.Run(runCtx) }()
	defer func() {
		stopRun()
		<-runDone
	}()

	// Each failure arms a back-off timer (beside the extension ticker) and
	// makes no further call until the fake clock passes it.
	for failures := int64(1); failures <= 3; failures++ {
		waitFor(t, 10*time.Second, func() bool { return receives() == failures && fake.Waiters() == 2 }, "a failed receive and its back-off timer")
		next, _ := fake.NextDeadline()
		if wait := next.Sub(fake.Now()); wait <= 0 {
			t.Fatalf("back-off after failure %d is %v", failures, wait)
		}
		time.Sleep(10 * time.Millisecond) // a loop that did not wait would call again now
		if got := receives(); got != failures {
			t.Fatalf("%d receives during the back-off after failure %d", got, failures)
		}
		fake.Set(next)
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Fatalf("failures were not logged: %s", logs.String())
	}

	// The queue comes back; the loop picks up where it was.
	if _, err := tmpl.Create(ctx, ddb, raw, opts); err != nil {
		t.Fatal(err)
	}
	body := envelope(t, 1)
	if _, err := raw.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(string(body))}); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan []inbox.Delivery, 1)
	go func() {
		ds, _ := in.Receive(rctx)
		got <- ds
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case ds := <-got:
			if len(ds) != 1 || ds[0].Body != string(body) {
				t.Fatalf("after recovery got %+v", ds)
			}
			if err := in.Ack(ctx, ds); err != nil {
				t.Fatal(err)
			}
			return
		case <-time.After(10 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("no message received within 20 s of the queue coming back")
			}
			if next, ok := fake.NextDeadline(); ok && fake.Waiters() == 2 {
				fake.Set(next) // release a pending back-off
			}
		}
	}
}

func TestLingerGathersMessagesBeforeTheNextReceive(t *testing.T) {
	q := newQueues(t, nil)
	ctx := context.Background()
	pub := q.publisher(t)
	if err := pub.Publish(ctx, envelope(t, 1)); err != nil {
		t.Fatal(err)
	}
	fake := clock.NewFake(time.Unix(0, 0))
	in := q.run(t, sqs.InboxOptions{Receivers: 1, Linger: time.Second, Clock: fake})
	first := receiveN(t, in, 1, 10*time.Second)
	// The receiver now lingers (a timer beside the extension ticker) while
	// more messages arrive, and makes no call until the clock passes it.
	waitFor(t, 10*time.Second, func() bool { return fake.Waiters() == 2 }, "the receiver to linger")
	bodies := [][]byte{envelope(t, 2), envelope(t, 3), envelope(t, 4)}
	if err := pub.PublishBatch(ctx, bodies); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // a receiver that did not linger would be polling now
	if n := q.calls("ReceiveMessage"); n != 1 {
		t.Fatalf("%d receives while lingering, want 1", n)
	}
	fake.Advance(time.Second)
	ds := receiveN(t, in, 3, 10*time.Second)
	if len(ds) != 3 || q.calls("ReceiveMessage") != 2 {
		t.Fatalf("after lingering got %d messages in %d receives, want 3 in one more receive", len(ds), q.calls("ReceiveMessage")-1)
	}
	if err := in.Ack(ctx, append(first, ds...)); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

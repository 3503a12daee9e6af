package sqs

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/protocol"
)

func TestBackoffGrowsAndStaysWithinBounds(t *testing.T) {
	b := backoff{base: 100 * time.Millisecond, max: 2 * time.Second}
	for attempt := range 40 {
		ceiling := min(b.max, b.base<<min(attempt, 30))
		for range 50 {
			d := b.delay(attempt)
			if d < ceiling/2 || d > ceiling {
				t.Fatalf("delay(%d) = %v, want within [%v, %v]", attempt, d, ceiling/2, ceiling)
			}
		}
	}
}

func TestBackoffIsJittered(t *testing.T) {
	b := backoff{base: time.Second, max: time.Minute}
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[b.delay(3)] = true
	}
	if len(seen) < 2 {
		t.Fatal("20 delays for the same attempt were all equal: no jitter")
	}
}

func TestPackBatchesHonoursCountAndSize(t *testing.T) {
	small := make([][]byte, 23)
	for i := range small {
		small[i] = []byte("x")
	}
	if got := packBatches(small); len(got) != 3 || len(got[0]) != 10 || len(got[2]) != 3 {
		t.Fatalf("23 small messages packed as %v, want 10+10+3", got)
	}

	// 300 KiB each: at most three fit under 1 MiB.
	big := make([][]byte, 7)
	for i := range big {
		big[i] = make([]byte, 300*1024)
	}
	got := packBatches(big)
	next := 0
	for _, g := range got {
		size := 0
		for _, i := range g {
			if i != next {
				t.Fatalf("batches %v are out of order", got)
			}
			next++
			size += len(big[i])
		}
		if size > MaxSQSMessageBytes {
			t.Fatalf("a batch of %d bytes exceeds SQS's 1 MiB: %v", size, got)
		}
	}
	if next != len(big) || len(got) != 3 {
		t.Fatalf("7 messages of 300 KiB packed as %v, want 3+3+1", got)
	}
}

func TestPublisherRefusesWhatSQSWouldRefuse(t *testing.T) {
	p, err := NewPublisher(awssqs.New(awssqs.Options{Region: "us-east-1"}), "https://sqs.example/q", PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		body []byte
		want error
		says string
	}{
		{"over the envelope limit", make([]byte, protocol.MaxEnvelopeBytes+1), ErrMessageTooLarge, "65537 bytes"},
		{"empty", nil, ErrInvalidMessage, "empty"},
		{"not UTF-8", []byte{'{', 0xff, '}'}, ErrInvalidMessage, "byte 1"},
		{"control character", []byte("a\x00b"), ErrInvalidMessage, "U+0000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := p.check(c.body)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("check = %v, want %v saying %q", err, c.want, c.says)
			}
		})
	}
	if err := p.check([]byte("{\"v\":1,\"tab\":\"\t\",\"ü\":\"😀\"}\n")); err != nil {
		t.Fatalf("a valid body was refused: %v", err)
	}
	if err := p.check(make([]byte, 0, 1)); err == nil {
		t.Fatal("empty body accepted")
	}
}

func TestOptionsAreValidated(t *testing.T) {
	client := awssqs.New(awssqs.Options{Region: "us-east-1"})
	for _, c := range []struct {
		name string
		opts InboxOptions
		says string
	}{
		{"fractional visibility", InboxOptions{VisibilityTimeout: 1500 * time.Millisecond}, "VisibilityTimeout"},
		{"long wait", InboxOptions{WaitTime: 30 * time.Second}, "WaitTime"},
		{"late extension", InboxOptions{ExtendAfter: 0.95}, "ExtendAfter"},
		{"short hold", InboxOptions{VisibilityTimeout: time.Minute, MaxHold: 30 * time.Second}, "MaxHold"},
		{"no receivers", InboxOptions{Receivers: -1}, "Receivers"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := NewInbox(client, "https://sqs.example/q", c.opts); err == nil || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("NewInbox = %v, want an error about %s", err, c.says)
			}
		})
	}
	if _, err := NewInbox(client, "", InboxOptions{}); err == nil || !strings.Contains(err.Error(), "WEIR_WORKER_QUEUE_URL") {
		t.Fatalf("NewInbox without a URL = %v, want an error naming WEIR_WORKER_QUEUE_URL", err)
	}
	if _, err := NewPublisher(client, "https://sqs.example/q", PublisherOptions{MaxMessageBytes: 2 << 20}); err == nil {
		t.Fatal("a publisher limit over SQS's 1 MiB was accepted")
	}
}

func TestBatchRunnerRetriesOnlyServerSideFailures(t *testing.T) {
	fake := clock.NewFake(time.Unix(0, 0))
	r := batchRunner{clock: fake, backoff: backoff{time.Millisecond, time.Millisecond}, attempts: 3}
	calls := 0
	var seen [][]int
	send := func(_ context.Context, idx []int) ([]types.BatchResultErrorEntry, error) {
		calls++
		seen = append(seen, append([]int(nil), idx...))
		var failed []types.BatchResultErrorEntry
		for _, i := range idx {
			switch i {
			case 3: // fails on SQS's side every time
				failed = append(failed, types.BatchResultErrorEntry{Id: aws.String("3"), Code: aws.String("InternalError"), Message: aws.String("boom")})
			case 12: // the request is at fault: never retried
				failed = append(failed, types.BatchResultErrorEntry{Id: aws.String("12"), Code: aws.String("ReceiptHandleIsInvalid"), Message: aws.String("bad"), SenderFault: true})
			}
		}
		return failed, nil
	}
	done := make(chan []EntryError)
	go func() { done <- r.run(context.Background(), groupsOf(15), send) }()
	var failed []EntryError
	for failed == nil {
		select {
		case failed = <-done:
		default:
			if fake.Waiters() > 0 {
				fake.Advance(time.Millisecond)
			}
			runtime.Gosched()
		}
	}
	// Group 0..9: entry 3 tried three times; group 10..14: entry 12 once.
	if calls != 4 {
		t.Fatalf("%d calls (%v), want 4: three for the first group, one for the second", calls, seen)
	}
	if len(seen[1]) != 1 || seen[1][0] != 3 {
		t.Fatalf("the retry sent %v, want only entry 3", seen[1])
	}
	if len(failed) != 2 || failed[0].Index != 3 || failed[1].Index != 12 || !failed[1].SenderFault {
		t.Fatalf("failed = %+v, want entries 3 (after retries) and 12 (sender fault)", failed)
	}
	err := &BatchError{Op: "DeleteMessageBatch", Total: 15, Failed: failed}
	if msg := err.Error(); !strings.Contains(msg, "2 of 15") || !strings.Contains(msg, "entry 3") || !strings.Contains(msg, "not retried") {
		t.Fatalf("BatchError says %q", msg)
	}
}

func TestBatchErrorUnwrapsCallErrors(t *testing.T) {
	r := batchRunner{clock: clock.Real{}, backoff: backoff{time.Millisecond, time.Millisecond}, attempts: 3}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	failed := r.run(ctx, groupsOf(12), func(context.Context, []int) ([]types.BatchResultErrorEntry, error) {
		t.Fatal("a call was made with a cancelled context")
		return nil, nil
	})
	err := &BatchError{Op: "SendMessageBatch", Total: 12, Failed: failed}
	if len(failed) != 12 || !errors.Is(err, context.Canceled) {
		t.Fatalf("%d failed, errors.Is(Canceled) = %v; want 12 and true", len(failed), errors.Is(err, context.Canceled))
	}
}

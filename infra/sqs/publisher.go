package sqs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/protocol"
)

// MaxSQSMessageBytes is SQS's limit on one message, and on the sum of the
// messages in one batch.
const MaxSQSMessageBytes = 1024 * 1024

// ErrMessageTooLarge is returned, before anything is sent, for a message
// over the publisher's limit.
var ErrMessageTooLarge = errors.New("message too large")

// ErrInvalidMessage is returned, before anything is sent, for a message SQS
// would refuse: empty, not UTF-8, or holding characters SQS does not allow.
var ErrInvalidMessage = errors.New("invalid message")

// PublisherOptions tune a Publisher. The zero value of each field means its
// default.
type PublisherOptions struct {
	// MaxMessageBytes is the largest body accepted (default
	// protocol.MaxEnvelopeBytes, at most SQS's 1 MiB).
	MaxMessageBytes int
	// Attempts is how often an entry of a batch is tried when SQS fails
	// it on its side (default 5).
	Attempts int
	// MinBackoff and MaxBackoff bound the pause before such a retry
	// (defaults 100 ms and 5 s), doubled per attempt, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// Clock drives the back-off (default the real clock).
	Clock clock.Clock
	// Logger receives retried entries (default slog.Default()).
	Logger *slog.Logger
}

func (o PublisherOptions) withDefaults() (PublisherOptions, error) {
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = protocol.MaxEnvelopeBytes
	}
	if o.Attempts == 0 {
		o.Attempts = 5
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch {
	case o.MaxMessageBytes < 1 || o.MaxMessageBytes > MaxSQSMessageBytes:
		return o, fmt.Errorf("sqs publisher: MaxMessageBytes is %d; it must be from 1 to SQS's limit of %d", o.MaxMessageBytes, MaxSQSMessageBytes)
	case o.Attempts < 1:
		return o, fmt.Errorf("sqs publisher: Attempts is %d; it must be at least 1", o.Attempts)
	case o.MinBackoff < 0 || o.MaxBackoff < o.MinBackoff:
		return o, fmt.Errorf("sqs publisher: back-off bounds %v..%v are not an interval", o.MinBackoff, o.MaxBackoff)
	}
	return o, nil
}

// Publisher sends worker envelopes to the worker queue.
type Publisher struct {
	client *awssqs.Client
	url    string
	o      PublisherOptions
	batch  batchRunner
}

// NewPublisher returns a publisher to the queue at queueURL. The client
// comes from the caller's AWS configuration.
func NewPublisher(client *awssqs.Client, queueURL string, opts PublisherOptions) (*Publisher, error) {
	if client == nil {
		return nil, errors.New("sqs publisher: no SQS client given")
	}
	if queueURL == "" {
		return nil, errors.New("sqs publisher: the queue URL is empty; set WEIR_WORKER_QUEUE_URL to the worker queue's URL")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Publisher{
		client: client,
		url:    queueURL,
		o:      o,
		batch:  batchRunner{clock: o.Clock, backoff: backoff{o.MinBackoff, o.MaxBackoff}, attempts: o.Attempts},
	}, nil
}

// Publish sends one message. The SDK's retryer retries transient failures.
func (p *Publisher) Publish(ctx context.Context, body []byte) error {
	if err := p.check(body); err != nil {
		return err
	}
	if _, err := p.client.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: &p.url, MessageBody: aws.String(string(body))}); err != nil {
		return fmt.Errorf("sqs publisher: send to %s: %w", p.url, err)
	}
	return nil
}

// PublishBatch sends messages with as few SendMessageBatch calls as SQS
// allows: up to ten messages and 1 MiB per call, in order. Every body is
// checked before anything is sent, so one bad message sends nothing.
// Entries SQS fails on its side are retried with back-off; a *BatchError
// lists those that still failed, by index into bodies (the others were
// sent).
func (p *Publisher) PublishBatch(ctx context.Context, bodies [][]byte) error {
	for i, b := range bodies {
		if err := p.check(b); err != nil {
			return fmt.Errorf("message %d of %d: %w", i, len(bodies), err)
		}
	}
	failed := p.batch.run(ctx, packBatches(bodies), func(ctx context.Context, idx []int) ([]types.BatchResultErrorEntry, error) {
		entries := make([]types.SendMessageBatchRequestEntry, len(idx))
		for j, i := range idx {
			entries[j] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(string(bodies[i]))}
		}
		out, err := p.client.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{QueueUrl: &p.url, Entries: entries})
		if err != nil {
			return nil, err
		}
		if len(out.Failed) > 0 {
			p.o.Logger.DebugContext(ctx, "SQS failed some entries of a send batch", "queue_url", p.url, "failed", len(out.Failed), "of", len(idx))
		}
		return out.Failed, nil
	})
	if len(failed) == 0 {
		return nil
	}
	return &BatchError{Op: "SendMessageBatch", Total: len(bodies), Failed: failed}
}

// check refuses what SQS would refuse, so that no request is paid for.
func (p *Publisher) check(body []byte) error {
	if len(body) > p.o.MaxMessageBytes {
		limit := "the publisher's limit"
		if p.o.MaxMessageBytes == protocol.MaxEnvelopeBytes {
			limit = "protocol.MaxEnvelopeBytes"
		}
		return fmt.Errorf("sqs publisher: %w: %d bytes, over the %d-byte limit (%s); send the news in more than one envelope",
			ErrMessageTooLarge, len(body), p.o.MaxMessageBytes, limit)
	}
	if len(body) == 0 {
		return fmt.Errorf("sqs publisher: %w: the body is empty", ErrInvalidMessage)
	}
	for i := 0; i < len(body); {
		r, size := utf8.DecodeRune(body[i:])
		if r == utf8.RuneError && size <= 1 {
			return fmt.Errorf("sqs publisher: %w: byte %d is not valid UTF-8", ErrInvalidMessage, i)
		}
		if !sqsAllows(r) {
			return fmt.Errorf("sqs publisher: %w: character %U at byte %d is not allowed in an SQS message", ErrInvalidMessage, r, i)
		}
		i += size
	}
	return nil
}

// sqsAllows is SQS's set of message characters: #x9, #xA, #xD, #x20 to
// #xD7FF, #xE000 to #xFFFD and #x10000 to #x10FFFF.
func sqsAllows(r rune) bool {
	return r == 0x9 || r == 0xA || r == 0xD ||
		(r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
}

// packBatches groups messages, in order, into batches of at most ten
// entries and 1 MiB. Each started 64 KiB of a batch's payload is billed as
// one request, so a batch of small envelopes costs one request where ten
// sends would cost ten; with envelopes of at most 64 KiB no packing costs
// more than sending them one by one.
func packBatches(bodies [][]byte) [][]int {
	var groups [][]int
	var cur []int
	size := 0
	for i, b := range bodies {
		if len(cur) == maxBatchEntries || (len(cur) > 0 && size+len(b) > MaxSQSMessageBytes) {
			groups = append(groups, cur)
			cur, size = nil, 0
		}
		cur = append(cur, i)
		size += len(b)
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

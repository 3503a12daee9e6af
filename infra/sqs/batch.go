package sqs

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/weirstream/weir/core/clock"
)

// maxBatchEntries is SQS's limit on entries per batch call.
const maxBatchEntries = 10

// EntryError is one entry of a batch call that did not succeed.
type EntryError struct {
	// Index is the entry's position in the slice given to Ack, Reject or
	// PublishBatch.
	Index int
	// MessageID is the SQS message id, when known (not for sends).
	MessageID string
	// Code, Message and SenderFault are what SQS said about the entry.
	// They are empty when the whole call failed; Err says why.
	Code, Message string
	SenderFault   bool
	Err           error
}

func (e EntryError) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "entry %d", e.Index)
	if e.MessageID != "" {
		fmt.Fprintf(&b, " (message %s)", e.MessageID)
	}
	switch {
	case e.Err != nil:
		fmt.Fprintf(&b, ": %v", e.Err)
	default:
		fmt.Fprintf(&b, ": %s: %s", e.Code, e.Message)
		if e.SenderFault {
			b.WriteString(" (the request was at fault; not retried)")
		}
	}
	return b.String()
}

// BatchError reports the entries of a batch operation that failed after
// retries. The other entries succeeded.
type BatchError struct {
	// Op is the SQS operation, such as "DeleteMessageBatch".
	Op string
	// Total is how many entries the operation was given.
	Total  int
	Failed []EntryError
}

func (e *BatchError) Error() string {
	const shown = 3
	var b strings.Builder
	fmt.Fprintf(&b, "sqs %s: %d of %d entries failed", e.Op, len(e.Failed), e.Total)
	for i, f := range e.Failed {
		if i == shown {
			fmt.Fprintf(&b, "; and %d more", len(e.Failed)-shown)
			break
		}
		b.WriteString("; ")
		b.WriteString(f.String())
	}
	return b.String()
}

// Unwrap returns the distinct errors of whole calls that failed, so that
// errors.Is(err, context.Canceled) and the like work.
func (e *BatchError) Unwrap() []error {
	var errs []error
	for _, f := range e.Failed {
		if f.Err != nil && !containsErr(errs, f.Err) {
			errs = append(errs, f.Err)
		}
	}
	return errs
}

func containsErr(errs []error, err error) bool {
	for _, e := range errs {
		if e == err {
			return true
		}
	}
	return false
}

// batchRunner sends entries in calls of at most ten, and retries the
// entries SQS failed on its side (SenderFault false) with back-off. Whole
// calls that fail are not retried here: the SDK's retryer already did.
type batchRunner struct {
	clock    clock.Clock
	backoff  backoff
	attempts int
}

// sendFunc makes one batch call for the entries at idx (indexes into the
// caller's slice, also used as the batch entry ids) and returns the
// entries that failed.
type sendFunc func(ctx context.Context, idx []int) ([]types.BatchResultErrorEntry, error)

// run calls send for every group of indexes and returns the entries that
// still failed, or nil.
func (r batchRunner) run(ctx context.Context, groups [][]int, send sendFunc) []EntryError {
	var failed []EntryError
	for _, pending := range groups {
		for attempt := 1; len(pending) > 0; attempt++ {
			if err := ctx.Err(); err != nil {
				failed = appendCallError(failed, pending, err)
				break
			}
			errs, err := send(ctx, pending)
			if err != nil {
				failed = appendCallError(failed, pending, err)
				break
			}
			var retry []int
			for _, e := range errs {
				i, convErr := strconv.Atoi(aws.ToString(e.Id))
				if convErr != nil {
					// Ids are ours; SQS answering with another is a bug
					// worth surfacing rather than retrying.
					failed = append(failed, EntryError{Index: -1, Code: aws.ToString(e.Code), Message: fmt.Sprintf("unknown entry id %q: %s", aws.ToString(e.Id), aws.ToString(e.Message)), SenderFault: e.SenderFault})
					continue
				}
				if !e.SenderFault && attempt < r.attempts {
					retry = append(retry, i)
					continue
				}
				failed = append(failed, EntryError{Index: i, Code: aws.ToString(e.Code), Message: aws.ToString(e.Message), SenderFault: e.SenderFault})
			}
			pending = retry
			if len(pending) > 0 && !clock.Sleep(ctx, r.clock, r.backoff.delay(attempt-1)) {
				failed = appendCallError(failed, pending, ctx.Err())
				break
			}
		}
	}
	return failed
}

func appendCallError(failed []EntryError, idx []int, err error) []EntryError {
	for _, i := range idx {
		failed = append(failed, EntryError{Index: i, Err: err})
	}
	return failed
}

// groupsOf splits the indexes 0..n-1 into groups of at most ten.
func groupsOf(n int) [][]int {
	var groups [][]int
	for start := 0; start < n; start += maxBatchEntries {
		end := min(start+maxBatchEntries, n)
		g := make([]int, 0, end-start)
		for i := start; i < end; i++ {
			g = append(g, i)
		}
		groups = append(groups, g)
	}
	return groups
}

// isGone reports whether a batch entry failed because the message is no
// longer held under that receipt handle (deleted, or visible again).
func isGone(code string) bool {
	return code == "ReceiptHandleIsInvalid" || code == "MessageNotInflight" ||
		code == "AWS.SimpleQueueService.MessageNotInflight"
}

package dynamo

import (
	"errors"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Retry tuning. On-demand tables throttle briefly when a partition's traffic
// jumps past twice its previous peak; such bursts clear within seconds, so a
// throttled request is worth several patient retries (the SDK backs off
// throttles from a 1 s base, other errors from DynamoDB's 25 ms) before the
// controller's own, slower retry takes over.
const (
	// idleConns is the idle connections kept per host: readParallel
	// requests of each of the manager's 8 bulk take-overs.
	idleConns = 128

	retryMaxAttempts = 8
	retryMaxBackoff  = 5 * time.Second
	retryBaseDelay   = 25 * time.Millisecond
)

// NewRetryer returns the standard SDK retryer tuned for DynamoDB throttling:
// more attempts than the SDK's default of 4, back-off capped at 5 s, and
// transactions cancelled only by a conflicting concurrent transaction
// retried too (DynamoDB reports those as TransactionCanceledException with
// reason TransactionConflict; retrying is safe, the conditions are checked
// afresh, and the SDK reuses the idempotency token). optFns adjust the
// options after that (tests lift the retry quota, so that many injected
// faults in a row are all retried).
//
// Retrying a conditional write is safe even when its first attempt took
// effect and only its answer was lost: the store and the lease recognise
// their own earlier write by the token it carries (tokens.go).
func NewRetryer(optFns ...func(*retry.StandardOptions)) aws.Retryer {
	return retry.NewStandard(append([]func(*retry.StandardOptions){func(o *retry.StandardOptions) {
		o.MaxAttempts = retryMaxAttempts
		o.MaxBackoff = retryMaxBackoff
		o.BaseDelay = retryBaseDelay
		o.Retryables = append(o.Retryables, retry.IsErrorRetryableFunc(transactionConflictOnly))
	}}, optFns...)...)
}

// transactionConflictOnly says a cancelled transaction is retryable when no
// condition failed and at least one item was locked by another transaction.
func transactionConflictOnly(err error) aws.Ternary {
	var tce *types.TransactionCanceledException
	if !errors.As(err, &tce) {
		return aws.UnknownTernary
	}
	conflict := false
	for _, r := range tce.CancellationReasons {
		switch aws.ToString(r.Code) {
		case "", "None":
		case "TransactionConflict":
			conflict = true
		default:
			return aws.FalseTernary
		}
	}
	return aws.BoolTernary(conflict)
}

// NewClient builds the DynamoDB client the store and the lease share from a
// configuration the caller loaded. Unless cfg carries its own retryer, the
// client uses NewRetryer; optFns (request accounting middleware, a custom
// retryer, an endpoint) are applied last.
//
// The SDK's own HTTP client keeps 10 idle connections per host; NewClient
// keeps idleConns, so the bursts of a take-over (up to 128 requests in
// flight) reuse connections instead of opening one, TLS handshake and all,
// for most requests.
func NewClient(cfg aws.Config, optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	opts := make([]func(*dynamodb.Options), 0, len(optFns)+2)
	if cfg.Retryer == nil {
		opts = append(opts, func(o *dynamodb.Options) { o.Retryer = NewRetryer() })
	}
	if hc, ok := cfg.HTTPClient.(*awshttp.BuildableClient); ok || cfg.HTTPClient == nil {
		if hc == nil {
			hc = awshttp.NewBuildableClient()
		}
		opts = append(opts, func(o *dynamodb.Options) {
			o.HTTPClient = hc.WithTransportOptions(func(tr *http.Transport) {
				tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, idleConns)
			})
		})
	}
	return dynamodb.NewFromConfig(cfg, append(opts, optFns...)...)
}

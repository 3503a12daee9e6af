// Package accounting counts every AWS call weir makes, per service and
// operation, so that tests, benchmarks and dashboards can put a number on
// what a job costs in requests.
//
// A Ledger is installed as SDK middleware (aws.Config.APIOptions). It counts
// attempts, not operations: the SDK's retryer may send one operation several
// times and AWS bills each request it receives, so a retried call shows up
// as two or more requests. On top of the request count it records the two
// quantities the bills are actually computed from:
//
//   - SQS bills each 64 KiB chunk of a request's payload as one request; the
//     ledger sizes the message bodies and attributes of SendMessage,
//     SendMessageBatch and ReceiveMessage and counts billed requests.
//   - DynamoDB on-demand bills capacity units. The ledger asks DynamoDB for
//     them (ReturnConsumedCapacity TOTAL on a copy of every data-plane
//     request that did not ask already) and adds up what comes back. A
//     conditional write that fails carries no consumed capacity in its
//     error, though AWS charges at least one write unit for it; the ledger
//     counts that minimum. Where an endpoint reports no capacity for a
//     successful call (the local emulator does so for transactions), the
//     ledger counts the least the call can have consumed and marks it
//     unmetered.
package accounting

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go/middleware"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// Key names one AWS API operation.
type Key struct {
	// Service is the SDK's service ID, such as "SQS" or "DynamoDB".
	Service string
	// Operation is the API operation, such as "ReceiveMessage".
	Operation string
}

func (k Key) String() string { return k.Service + "." + k.Operation }

// Usage is what one operation consumed since the ledger was created or
// last reset.
type Usage struct {
	// Requests counts attempts sent to AWS, retries included.
	Requests int64
	// Failed counts the attempts (among Requests) that ended in an error.
	Failed int64
	// Billed counts SQS billing units: one per started 64 KiB of payload
	// in each request. For other services it equals Requests.
	Billed int64
	// ReadUnits and WriteUnits are DynamoDB capacity units consumed.
	ReadUnits, WriteUnits float64
	// Unmetered counts successful DynamoDB data-plane requests whose answer
	// reported no consumed capacity; their units above are the least such
	// a request can consume, not what it did.
	Unmetered int64
}

func (u *Usage) add(o Usage) {
	u.Requests += o.Requests
	u.Failed += o.Failed
	u.Billed += o.Billed
	u.ReadUnits += o.ReadUnits
	u.WriteUnits += o.WriteUnits
	u.Unmetered += o.Unmetered
}

// Ledger counts AWS calls. It is safe for concurrent use; one ledger may be
// installed on many clients.
type Ledger struct {
	mu    sync.Mutex
	usage map[Key]*Usage

	requests metric.Int64Counter
	billed   metric.Int64Counter
	capacity metric.Float64Counter
}

// Option configures a Ledger.
type Option func(*ledgerOptions)

type ledgerOptions struct {
	meterProvider metric.MeterProvider
}

// WithMeterProvider exports the counts through mp instead of the global
// meter provider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *ledgerOptions) { o.meterProvider = mp }
}

// Metric names the ledger exports.
const (
	MetricRequests = "weir.aws.requests"
	MetricBilled   = "weir.aws.sqs.billed_requests"
	MetricCapacity = "weir.aws.dynamodb.capacity_units"
)

// AttrCapacityKind says whether DynamoDB capacity units were read or
// write units.
const AttrCapacityKind = attribute.Key("weir.aws.dynamodb.capacity.kind")

// NewLedger returns an empty ledger that also exports its counts as
// OpenTelemetry metrics (through the global meter provider unless
// WithMeterProvider says otherwise; until one is set up they go nowhere).
func NewLedger(opts ...Option) (*Ledger, error) {
	o := ledgerOptions{meterProvider: otel.GetMeterProvider()}
	for _, opt := range opts {
		opt(&o)
	}
	m := o.meterProvider.Meter("github.com/weirstream/weir/infra/accounting")
	l := &Ledger{usage: make(map[Key]*Usage)}
	var err error
	if l.requests, err = m.Int64Counter(MetricRequests,
		metric.WithUnit("{request}"),
		metric.WithDescription("AWS API requests sent, each retry attempt counted")); err != nil {
		return nil, fmt.Errorf("accounting: create %s counter: %w", MetricRequests, err)
	}
	if l.billed, err = m.Int64Counter(MetricBilled,
		metric.WithUnit("{request}"),
		metric.WithDescription("SQS requests as billed: one per started 64 KiB of payload")); err != nil {
		return nil, fmt.Errorf("accounting: create %s counter: %w", MetricBilled, err)
	}
	if l.capacity, err = m.Float64Counter(MetricCapacity,
		metric.WithUnit("{capacity_unit}"),
		metric.WithDescription("DynamoDB read and write capacity units consumed")); err != nil {
		return nil, fmt.Errorf("accounting: create %s counter: %w", MetricCapacity, err)
	}
	return l, nil
}

// Instrument returns a copy of cfg whose clients report to the ledger.
// The caller's APIOptions slice is not modified.
func (l *Ledger) Instrument(cfg aws.Config) aws.Config {
	opts := make([]func(*middleware.Stack) error, 0, len(cfg.APIOptions)+1)
	opts = append(opts, cfg.APIOptions...)
	cfg.APIOptions = append(opts, l.APIOption)
	return cfg
}

// APIOption adds the ledger's middleware to an operation's stack; append it
// to aws.Config.APIOptions (or a client's Options.APIOptions).
func (l *Ledger) APIOption(stack *middleware.Stack) error {
	if err := stack.Initialize.Add(requestCapture{}, middleware.After); err != nil {
		return fmt.Errorf("accounting: add %s middleware: %w", captureID, err)
	}
	// At the very end of Finalize, after the retry middleware, so that it
	// runs once per attempt.
	if err := stack.Finalize.Add(attemptCounter{l}, middleware.After); err != nil {
		return fmt.Errorf("accounting: add %s middleware: %w", attemptID, err)
	}
	return nil
}

// Snapshot returns the number of requests (attempts) per operation.
func (l *Ledger) Snapshot() map[Key]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[Key]int64, len(l.usage))
	for k, u := range l.usage {
		out[k] = u.Requests
	}
	return out
}

// Usage returns everything counted per operation.
func (l *Ledger) Usage() map[Key]Usage {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[Key]Usage, len(l.usage))
	for k, u := range l.usage {
		out[k] = *u
	}
	return out
}

// Total returns the usage of every operation added up.
func (l *Ledger) Total() Usage {
	var t Usage
	for _, u := range l.Usage() {
		t.add(u)
	}
	return t
}

// Reset forgets everything counted so far. The exported OpenTelemetry
// counters are monotonic and are not reset.
func (l *Ledger) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.usage)
}

// record adds one attempt's usage and exports it.
func (l *Ledger) record(ctx context.Context, k Key, u Usage) {
	l.mu.Lock()
	cur := l.usage[k]
	if cur == nil {
		cur = &Usage{}
		l.usage[k] = cur
	}
	cur.add(u)
	l.mu.Unlock()

	// The request context may already be cancelled; exporting must still
	// happen, so the context's values are kept and its deadline dropped.
	ctx = context.WithoutCancel(ctx)
	attrs := metric.WithAttributeSet(attribute.NewSet(
		semconv.RPCSystemKey.String("aws-api"),
		semconv.RPCService(k.Service),
		semconv.RPCMethod(k.Operation),
	))
	l.requests.Add(ctx, u.Requests, attrs)
	if k.Service == sqsService {
		l.billed.Add(ctx, u.Billed, attrs)
	}
	if u.ReadUnits > 0 {
		l.capacity.Add(ctx, u.ReadUnits, capacityAttrs(k, "read"))
	}
	if u.WriteUnits > 0 {
		l.capacity.Add(ctx, u.WriteUnits, capacityAttrs(k, "write"))
	}
}

func capacityAttrs(k Key, kind string) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(
		semconv.RPCSystemKey.String("aws-api"),
		semconv.RPCService(k.Service),
		semconv.RPCMethod(k.Operation),
		AttrCapacityKind.String(kind),
	))
}

// sortedKeys orders keys by service, then operation, for stable output.
func sortedKeys[V any](m map[Key]V) []Key {
	keys := make([]Key, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Service != keys[j].Service {
			return keys[i].Service < keys[j].Service
		}
		return keys[i].Operation < keys[j].Operation
	})
	return keys
}

const (
	captureID = "weir.accounting.capture"
	attemptID = "weir.accounting.attempt"
)

type paramsKey struct{}

// requestCapture remembers the operation's input for the per-attempt
// counter (the Finalize step sees only the HTTP request) and, for DynamoDB,
// asks for consumed capacity.
type requestCapture struct{}

func (requestCapture) ID() string { return captureID }

func (requestCapture) HandleInitialize(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	if middleware.GetServiceID(ctx) == dynamoService {
		in.Parameters = withConsumedCapacity(in.Parameters)
	}
	ctx = middleware.WithStackValue(ctx, paramsKey{}, in.Parameters)
	return next.HandleInitialize(ctx, in)
}

// attemptCounter records each attempt once it has an answer.
type attemptCounter struct{ l *Ledger }

func (attemptCounter) ID() string { return attemptID }

func (a attemptCounter) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	out, md, err := next.HandleFinalize(ctx, in)
	k := Key{Service: middleware.GetServiceID(ctx), Operation: middleware.GetOperationName(ctx)}
	u := Usage{Requests: 1, Billed: 1}
	if err != nil {
		u.Failed = 1
	}
	params := middleware.GetStackValue(ctx, paramsKey{})
	switch k.Service {
	case sqsService:
		u.Billed = sqsBilled(params, out.Result, err)
	case dynamoService:
		var unmetered bool
		u.ReadUnits, u.WriteUnits, unmetered = dynamoCapacity(k.Operation, params, out.Result, err)
		if unmetered {
			u.Unmetered = 1
		}
	}
	a.l.record(ctx, k, u)
	return out, md, err
}

// Package faults injects the faults AWS really produces into an AWS SDK
// client's HTTP path, reproducibly: server errors, throttling, added
// latency, and lost answers (the request reaches the service and takes
// effect, the answer never reaches the client, which sends it again).
//
// An Injector is an HTTP client for aws-sdk-go-v2 (config.WithHTTPClient,
// or the HTTPClient field of a service client's options) and an
// http.RoundTripper. It picks the operation from the X-Amz-Target header
// that the JSON protocols (DynamoDB, SQS) send, applies the first rule
// that matches and hits, and counts what it injected per kind and
// operation so tests and reports can say what a run went through.
//
// Draws come from one generator seeded by Options.Seed: the same requests
// in the same order meet the same faults.
package faults

import (
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"

	"github.com/weirstream/weir/core/clock"
)

// Kind is a kind of fault.
type Kind string

// The kinds of fault an Injector can inject.
const (
	// ServerError answers 500 with an InternalServerError body, without
	// forwarding the request.
	ServerError Kind = "server_error"
	// Throttle answers 400 with a ThrottlingException body, without
	// forwarding the request.
	Throttle Kind = "throttle"
	// Latency waits Rule.Delay, then forwards the request; it combines
	// with the other kinds.
	Latency Kind = "latency"
	// LostAnswer forwards the request, discards the answer and returns a
	// *LostAnswerError, which the SDK's retryer retries.
	LostAnswer Kind = "lost_answer"
)

var kinds = []Kind{ServerError, Throttle, Latency, LostAnswer}

// Rule says which requests meet which fault.
type Rule struct {
	// Kind is the fault to inject.
	Kind Kind
	// Operations are the operations the rule applies to, by name
	// ("PutItem") or by full X-Amz-Target ("DynamoDB_20120810.PutItem").
	// Empty: every request, including those that carry no X-Amz-Target.
	Operations []string
	// Rate is the share of matching requests that are hit, in (0, 1].
	Rate float64
	// FirstAttemptOnly hits only the first attempt of an SDK call (the
	// Amz-Sdk-Request header says which attempt it is), so the SDK's
	// retry goes through: at most one fault of this rule per call.
	FirstAttemptOnly bool
	// Limit ends the rule after that many hits; 0 means no limit.
	Limit int
	// Delay is the latency a Latency rule adds. Only for Latency.
	Delay time.Duration
}

// HTTPClient sends requests; aws.HTTPClient and *http.Client are ones.
type HTTPClient interface {
	Do(*http.Request) (*http.Response, error)
}

// Options configure an Injector. The zero value injects nothing.
type Options struct {
	// Seed seeds the draws that decide which requests are hit.
	Seed uint64
	// Rules are tried in order; Latency rules all apply, and of the
	// others the first that matches and hits decides the request's fate.
	Rules []Rule
	// Base sends the requests that reach the service. Default: the SDK's
	// default HTTP client.
	Base HTTPClient
	// OnInject, if set, is called for every fault drawn (outside the
	// Injector's lock), so a process can log what it met as it happens.
	OnInject func(kind Kind, operation string)
}

// Validate says which rule is unusable and how to fix it.
func (o Options) Validate() error {
	for i, r := range o.Rules {
		where := fmt.Sprintf("faults: rule %d (%s)", i+1, r.Kind)
		switch {
		case !slices.Contains(kinds, r.Kind):
			return fmt.Errorf("faults: rule %d: kind %q is unknown: use one of %s, %s, %s or %s", i+1, r.Kind, ServerError, Throttle, Latency, LostAnswer)
		case !(r.Rate > 0 && r.Rate <= 1):
			return fmt.Errorf("%s: rate %v is not in (0, 1]: give the share of matching requests to hit (1 hits every one)", where, r.Rate)
		case r.Limit < 0:
			return fmt.Errorf("%s: limit %d is negative: give the most hits, or 0 for no limit", where, r.Limit)
		case r.Kind == Latency && r.Delay <= 0:
			return fmt.Errorf("%s: delay %s must be positive: say how much latency to add", where, r.Delay)
		case r.Kind != Latency && r.Delay != 0:
			return fmt.Errorf("%s: delay %s is only for %s rules: remove it or make the rule a %s rule", where, r.Delay, Latency, Latency)
		}
		for _, op := range r.Operations {
			if strings.TrimSpace(op) == "" {
				return fmt.Errorf("%s: an operation name is empty: name operations as in X-Amz-Target (PutItem or DynamoDB_20120810.PutItem), or list none for every operation", where)
			}
		}
	}
	return nil
}

// Count is how many faults of one kind an operation met.
type Count struct {
	Kind      Kind
	Operation string
	N         int
}

// Injector injects faults into the requests it sends. It is safe for
// concurrent use.
type Injector struct {
	rules    []Rule
	base     HTTPClient
	onInject func(Kind, string)

	mu     sync.Mutex
	rng    *rand.Rand
	hits   []int // per rule
	counts map[Count]int
}

// New returns an Injector for o, or says why o is unusable.
func New(o Options) (*Injector, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	base := o.Base
	if base == nil {
		base = awshttp.NewBuildableClient()
	}
	return &Injector{
		rules:    slices.Clone(o.Rules),
		base:     base,
		onInject: o.OnInject,
		rng:      rand.New(rand.NewPCG(o.Seed, 0x5eed)),
		hits:     make([]int, len(o.Rules)),
		counts:   map[Count]int{},
	}, nil
}

// LostAnswerError is what a request whose answer was lost returns: the
// service received and applied it, the client never heard back. It is a
// net.Error that timed out, which aws-sdk-go-v2 retries (its retryer
// treats every error of the HTTP client as a connection error, and a
// timed-out net.Error as retryable on its own).
type LostAnswerError struct {
	Operation string
}

var _ net.Error = (*LostAnswerError)(nil)

func (e *LostAnswerError) Error() string {
	return fmt.Sprintf("faults: the answer to %s was lost after the service received it (injected time-out)", e.Operation)
}

// Timeout reports true: to the client a lost answer is a time-out.
func (e *LostAnswerError) Timeout() bool { return true }

// Temporary reports true: sending again may succeed.
func (e *LostAnswerError) Temporary() bool { return true }

// RoundTrip is Do, so an Injector can be an http.Client's Transport.
func (in *Injector) RoundTrip(r *http.Request) (*http.Response, error) { return in.Do(r) }

// Do sends r through the rules.
func (in *Injector) Do(r *http.Request) (*http.Response, error) {
	target := r.Header.Get("X-Amz-Target")
	op := operation(target)
	delay, fault, drawn := in.decide(r, target, op)
	if in.onInject != nil {
		for _, k := range drawn {
			in.onInject(k, opName(op))
		}
	}
	if delay > 0 {
		if !clock.Sleep(r.Context(), clock.Real{}, delay) {
			return nil, r.Context().Err()
		}
	}
	switch fault {
	case ServerError:
		return errorResponse(r, http.StatusInternalServerError, target, "InternalServerError", "injected server error"), nil
	case Throttle:
		return errorResponse(r, http.StatusBadRequest, target, "ThrottlingException", "Rate of requests exceeds the allowed throughput (injected)"), nil
	case LostAnswer:
		resp, err := in.base.Do(r)
		if err != nil {
			return nil, err // really lost: nothing to discard
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return nil, &LostAnswerError{Operation: opName(op)}
	}
	return in.base.Do(r)
}

// decide draws for every matching rule: the total latency to add, the
// fault (if any) that decides the request, and every kind drawn.
func (in *Injector) decide(r *http.Request, target, op string) (time.Duration, Kind, []Kind) {
	first := firstAttempt(r)
	in.mu.Lock()
	defer in.mu.Unlock()
	var (
		delay time.Duration
		fault Kind
		drawn []Kind
	)
	for i, rule := range in.rules {
		if fault != "" && rule.Kind != Latency {
			continue
		}
		if !matches(rule, target, op) || (rule.FirstAttemptOnly && !first) || (rule.Limit > 0 && in.hits[i] >= rule.Limit) {
			continue
		}
		if rule.Rate < 1 && in.rng.Float64() >= rule.Rate {
			continue
		}
		in.hits[i]++
		in.counts[Count{Kind: rule.Kind, Operation: opName(op)}]++
		drawn = append(drawn, rule.Kind)
		if rule.Kind == Latency {
			delay += rule.Delay
		} else {
			fault = rule.Kind
		}
	}
	return delay, fault, drawn
}

func matches(rule Rule, target, op string) bool {
	if len(rule.Operations) == 0 {
		return true
	}
	return slices.ContainsFunc(rule.Operations, func(name string) bool {
		return op != "" && (name == op || name == target)
	})
}

// operation is the operation part of an X-Amz-Target
// ("DynamoDB_20120810.PutItem" → "PutItem").
func operation(target string) string {
	if i := strings.LastIndexByte(target, '.'); i >= 0 {
		return target[i+1:]
	}
	return target
}

func opName(op string) string {
	if op == "" {
		return "(no X-Amz-Target)"
	}
	return op
}

// firstAttempt reads the SDK's attempt number (Amz-Sdk-Request:
// "attempt=1; max=3"); a request without one counts as a first attempt.
func firstAttempt(r *http.Request) bool {
	for part := range strings.SplitSeq(r.Header.Get("Amz-Sdk-Request"), ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "attempt="); ok {
			n, err := strconv.Atoi(v)
			return err != nil || n <= 1
		}
	}
	return true
}

// errorResponse is an error answer in the JSON protocols' shape: the
// error code in __type, qualified by the service's namespace as AWS
// sends it, so the SDK decodes it as that service's error.
func errorResponse(r *http.Request, status int, target, code, message string) *http.Response {
	typ := code
	if ns := namespace(target); ns != "" {
		typ = ns + "#" + code
	}
	body := fmt.Sprintf(`{"__type":%q,"message":%q}`, typ, message)
	h := http.Header{}
	h.Set("Content-Type", "application/x-amz-json-1.0")
	h.Set("X-Amzn-Query-Error", code+";Sender")
	h.Set("X-Amzn-Requestid", "injected-fault")
	// DynamoDB signs every answer with a CRC32 of its body, and the SDK
	// checks it: an injected answer carries one too, as a real one would.
	h.Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(body))), 10))
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       r,
	}
}

// namespace is the error namespace of the service an X-Amz-Target names.
func namespace(target string) string {
	switch {
	case strings.HasPrefix(target, "DynamoDB_"):
		return "com.amazonaws.dynamodb.v20120810"
	case strings.HasPrefix(target, "AmazonSQS."):
		return "com.amazonaws.sqs"
	}
	return ""
}

// Injected is how many faults of kind the operation met; op "" counts
// every operation.
func (in *Injector) Injected(kind Kind, op string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := 0
	for c, v := range in.counts {
		if c.Kind == kind && (op == "" || c.Operation == op) {
			n += v
		}
	}
	return n
}

// Counts lists what was injected, by kind then operation.
func (in *Injector) Counts() []Count {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]Count, 0, len(in.counts))
	for c, n := range in.counts {
		c.N = n
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Count) int {
		if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
			return c
		}
		return strings.Compare(a.Operation, b.Operation)
	})
	return out
}

// String summarises what was injected, for logs and reports:
// "lost_answer PutItem=3 UpdateItem=5; throttle Query=1".
func (in *Injector) String() string {
	var b strings.Builder
	var last Kind
	for _, c := range in.Counts() {
		if c.Kind != last {
			if last != "" {
				b.WriteString("; ")
			}
			b.WriteString(string(c.Kind))
			last = c.Kind
		}
		fmt.Fprintf(&b, " %s=%d", c.Operation, c.N)
	}
	if b.Len() == 0 {
		return "no faults injected"
	}
	return b.String()
}

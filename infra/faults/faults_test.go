package faults_test

import (
	"context"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/weirstream/weir/infra/faults"
)

// service is a stand-in for a JSON-protocol AWS service: it answers every
// request with an empty JSON object and counts what reached it, per
// X-Amz-Target.
type service struct {
	srv      *httptest.Server
	received atomic.Int64
	puts     atomic.Int64
}

func newService(t *testing.T) *service {
	s := &service{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.received.Add(1)
		if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".PutItem") {
			s.puts.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = w.Write([]byte("{}"))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func newInjector(t *testing.T, rules ...faults.Rule) *faults.Injector {
	t.Helper()
	in, err := faults.New(faults.Options{Seed: 7, Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// client is a DynamoDB client on s through in; attempts 1 means no retry.
func (s *service) client(in *faults.Injector, attempts int) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		HTTPClient:   in,
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = attempts
			o.MaxBackoff = time.Millisecond
			o.RateLimiter = ratelimit.None
		}),
	})
}

func put(ctx context.Context, db *dynamodb.Client) error {
	_, err := db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String("t"),
		Item:      map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "a"}},
	})
	return err
}

func get(ctx context.Context, db *dynamodb.Client) error {
	_, err := db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String("t"),
		Key:       map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "a"}},
	})
	return err
}

// A lost answer reaches the service, and the SDK retries it: the call
// succeeds, and the service saw the request twice.
func TestLostAnswerReachesTheServiceAndIsRetried(t *testing.T) {
	s := newService(t)
	in := newInjector(t, faults.Rule{Kind: faults.LostAnswer, Operations: []string{"PutItem"}, Rate: 1, FirstAttemptOnly: true})
	db := s.client(in, 3)
	if err := put(t.Context(), db); err != nil {
		t.Fatalf("PutItem with one lost answer: %v", err)
	}
	if got := s.puts.Load(); got != 2 {
		t.Fatalf("service received %d PutItems, want 2 (the lost one and the retry)", got)
	}
	if got := in.Injected(faults.LostAnswer, "PutItem"); got != 1 {
		t.Fatalf("Injected(lost_answer, PutItem) = %d, want 1", got)
	}
	// Other operations pass untouched.
	if err := get(t.Context(), db); err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	if got := in.Injected(faults.LostAnswer, ""); got != 1 {
		t.Fatalf("lost answers in all = %d, want 1", got)
	}
}

// Without retries the caller sees the error the SDK's retryer classifies:
// a timed-out net.Error, retryable.
func TestLostAnswerIsARetryableTimeout(t *testing.T) {
	s := newService(t)
	in := newInjector(t, faults.Rule{Kind: faults.LostAnswer, Rate: 1})
	err := put(t.Context(), s.client(in, 1))
	var lost *faults.LostAnswerError
	if !errors.As(err, &lost) || lost.Operation != "PutItem" {
		t.Fatalf("err = %v, want a *faults.LostAnswerError for PutItem", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a net.Error that timed out", err)
	}
	if got := (retry.RetryableConnectionError{}).IsErrorRetryable(lost); got != aws.TrueTernary {
		t.Fatalf("the SDK's connection check says %v for a bare lost answer, want true", got)
	}
	if got := retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err); got != aws.TrueTernary {
		t.Fatalf("the SDK's default retryables say %v, want true", got)
	}
	if s.puts.Load() != 1 {
		t.Fatalf("service received %d requests, want 1: a lost answer is sent", s.puts.Load())
	}
}

func TestThrottleIsTheServicesThrottlingError(t *testing.T) {
	s := newService(t)
	in := newInjector(t, faults.Rule{Kind: faults.Throttle, Operations: []string{"DynamoDB_20120810.PutItem"}, Rate: 1, Limit: 1})
	err := put(t.Context(), s.client(in, 1))
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "ThrottlingException" {
		t.Fatalf("err = %v, want an API error ThrottlingException", err)
	}
	if got := (retry.ThrottleErrorCode{Codes: retry.DefaultThrottleErrorCodes}).IsErrorThrottle(err); got != aws.TrueTernary {
		t.Fatalf("the SDK does not see %v as throttling", err)
	}
	if s.received.Load() != 0 {
		t.Fatal("a throttled request reached the service")
	}
	// Limit 1: the next call goes through.
	if err := put(t.Context(), s.client(in, 1)); err != nil {
		t.Fatalf("PutItem after the rule's limit: %v", err)
	}
}

func TestServerErrorIsA500TheSDKRetries(t *testing.T) {
	s := newService(t)
	in := newInjector(t, faults.Rule{Kind: faults.ServerError, Rate: 1, FirstAttemptOnly: true})
	var re interface{ HTTPStatusCode() int }
	err := put(t.Context(), s.client(in, 1))
	if !errors.As(err, &re) || re.HTTPStatusCode() != 500 {
		t.Fatalf("err = %v, want an HTTP 500", err)
	}
	if err := put(t.Context(), s.client(in, 2)); err != nil {
		t.Fatalf("PutItem with one server error and a retry: %v", err)
	}
	if got := in.Injected(faults.ServerError, "PutItem"); got != 2 {
		t.Fatalf("server errors = %d, want 2", got)
	}
	if s.puts.Load() != 1 {
		t.Fatalf("service received %d PutItems, want 1", s.puts.Load())
	}
}

func TestLatencyDelaysAndCombines(t *testing.T) {
	s := newService(t)
	in := newInjector(t,
		faults.Rule{Kind: faults.Latency, Rate: 1, Delay: 50 * time.Millisecond},
		faults.Rule{Kind: faults.LostAnswer, Rate: 1, FirstAttemptOnly: true},
	)
	start := time.Now()
	if err := put(t.Context(), s.client(in, 2)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("two attempts took %s, want at least 2 × 50 ms", d)
	}
	if in.Injected(faults.Latency, "PutItem") != 2 || in.Injected(faults.LostAnswer, "PutItem") != 1 {
		t.Fatalf("counts = %v", in.Counts())
	}
	if got, want := in.String(), "latency PutItem=2; lost_answer PutItem=1"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	// Latency ends with the request's context.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	slow := newInjector(t, faults.Rule{Kind: faults.Latency, Rate: 1, Delay: time.Hour})
	if err := put(ctx, s.client(slow, 1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
}

// The same seed hits the same requests; another seed, others.
func TestDrawsAreReproducible(t *testing.T) {
	s := newService(t)
	pattern := func(seed uint64) string {
		in, err := faults.New(faults.Options{Seed: seed, Rules: []faults.Rule{{Kind: faults.Throttle, Rate: 0.3}}})
		if err != nil {
			t.Fatal(err)
		}
		db := s.client(in, 1)
		var b strings.Builder
		for range 60 {
			if put(t.Context(), db) != nil {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	a, b, c := pattern(1), pattern(1), pattern(2)
	if a != b {
		t.Fatalf("seed 1 gave %s then %s", a, b)
	}
	if a == c {
		t.Fatalf("seeds 1 and 2 gave the same pattern %s", a)
	}
	if n := strings.Count(a, "x"); n < 6 || n > 30 {
		t.Fatalf("rate 0.3 hit %d of 60", n)
	}
}

func TestOptionsAreValidated(t *testing.T) {
	for _, tc := range []struct {
		rule faults.Rule
		want string
	}{
		{faults.Rule{Kind: "drop", Rate: 1}, `kind "drop" is unknown`},
		{faults.Rule{Kind: faults.Throttle}, "rate 0 is not in (0, 1]"},
		{faults.Rule{Kind: faults.Throttle, Rate: 1.5}, "rate 1.5 is not in (0, 1]"},
		{faults.Rule{Kind: faults.Latency, Rate: 1}, "delay 0s must be positive"},
		{faults.Rule{Kind: faults.LostAnswer, Rate: 1, Delay: time.Second}, "only for latency rules"},
		{faults.Rule{Kind: faults.ServerError, Rate: 1, Limit: -1}, "limit -1 is negative"},
		{faults.Rule{Kind: faults.ServerError, Rate: 1, Operations: []string{""}}, "operation name is empty"},
	} {
		_, err := faults.New(faults.Options{Rules: []faults.Rule{{Kind: faults.Throttle, Rate: 1}, tc.rule}})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "rule 2") {
			t.Errorf("New with %+v = %v, want an error naming rule 2 and containing %q", tc.rule, err, tc.want)
		}
	}
	if in, err := faults.New(faults.Options{}); err != nil || in.String() != "no faults injected" {
		t.Fatalf("zero Options: %v, %v", in, err)
	}
}

// An injected DynamoDB error answer carries the CRC32 of its body, as the
// service's own answers do, so the SDK's checksum check passes.
func TestInjectedDynamoDBAnswersCarryTheirChecksum(t *testing.T) {
	in := newInjector(t, faults.Rule{Kind: faults.Throttle, Rate: 1})
	req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810.PutItem")
	resp, err := in.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10)
	if got := resp.Header.Get("X-Amz-Crc32"); got != want {
		t.Fatalf("X-Amz-Crc32 = %q, want %s (the CRC32 of %s)", got, want, body)
	}
}

// OnInject hears of every fault drawn, latency included, as it happens.
func TestOnInjectHearsEveryFault(t *testing.T) {
	s := newService(t)
	var heard []string
	in, err := faults.New(faults.Options{Seed: 7, Rules: []faults.Rule{
		{Kind: faults.Latency, Rate: 1, Delay: time.Millisecond, Operations: []string{"PutItem"}},
		{Kind: faults.Throttle, Rate: 1, FirstAttemptOnly: true},
	}, OnInject: func(k faults.Kind, op string) { heard = append(heard, string(k)+" "+op) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := put(t.Context(), s.client(in, 2)); err != nil {
		t.Fatal(err)
	}
	if err := get(t.Context(), s.client(in, 1)); err == nil {
		t.Fatal("the throttled GetItem succeeded")
	}
	want := "latency PutItem,throttle PutItem,latency PutItem,throttle GetItem"
	if got := strings.Join(heard, ","); got != want {
		t.Fatalf("heard %q, want %q", got, want)
	}
}

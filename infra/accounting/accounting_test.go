package accounting_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/weirstream/weir/infra/accounting"
)

// noDelay makes the SDK's retryer retry at once, so the test runs in
// microseconds.
type noDelay struct{}

func (noDelay) BackoffDelay(int, error) (time.Duration, error) { return 0, nil }

// failingEndpoint answers every request with a retryable server error and
// counts what it received, so the ledger can be compared with the wire.
func failingEndpoint(t *testing.T) (aws.Config, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"__type":"com.amazonaws.sqs#InternalError","message":"try again"}`))
	}))
	t.Cleanup(srv.Close)
	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(srv.URL),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 3
				o.Backoff = noDelay{}
			})
		},
	}
	return cfg, &hits
}

func TestRetriesAreCountedAsSeparateRequests(t *testing.T) {
	cfg, hits := failingEndpoint(t)
	l, err := accounting.NewLedger()
	if err != nil {
		t.Fatal(err)
	}
	client := sqs.NewFromConfig(l.Instrument(cfg))
	_, err = client.GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: aws.String("q")})
	if err == nil {
		t.Fatal("GetQueueUrl against a failing endpoint succeeded")
	}
	key := accounting.Key{Service: "SQS", Operation: "GetQueueUrl"}
	if got := l.Snapshot()[key]; got != 3 || hits.Load() != 3 {
		t.Fatalf("ledger counted %d requests, endpoint saw %d; want 3 and 3 (one per attempt)", got, hits.Load())
	}
	u := l.Usage()[key]
	if u.Failed != 3 || u.Billed != 3 {
		t.Fatalf("usage = %+v, want 3 failed and 3 billed", u)
	}

	l.Reset()
	if s := l.Snapshot(); len(s) != 0 {
		t.Fatalf("after Reset, Snapshot = %v, want empty", s)
	}
}

func TestRequestsAreExportedWithRPCAttributes(t *testing.T) {
	cfg, _ := failingEndpoint(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	l, err := accounting.NewLedger(accounting.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	client := sqs.NewFromConfig(l.Instrument(cfg))
	_, _ = client.GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: aws.String("q")})
	l.Reset() // the exported counter is monotonic and must not follow

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != accounting.MetricRequests {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || !sum.IsMonotonic {
				t.Fatalf("%s is %T, want a monotonic Sum[int64]", m.Name, m.Data)
			}
			if len(sum.DataPoints) != 1 {
				t.Fatalf("%d data points, want 1: %+v", len(sum.DataPoints), sum.DataPoints)
			}
			dp := sum.DataPoints[0]
			service, _ := dp.Attributes.Value("rpc.service")
			method, _ := dp.Attributes.Value("rpc.method")
			system, _ := dp.Attributes.Value("rpc.system")
			if dp.Value != 3 || service.AsString() != "SQS" || method.AsString() != "GetQueueUrl" || system.AsString() != "aws-api" {
				t.Fatalf("data point = %d %v, want 3 with rpc.system=aws-api rpc.service=SQS rpc.method=GetQueueUrl", dp.Value, dp.Attributes.ToSlice())
			}
			return
		}
	}
	t.Fatalf("metric %s was not exported; got %+v", accounting.MetricRequests, rm.ScopeMetrics)
}

func TestInstrumentLeavesTheCallersConfigAlone(t *testing.T) {
	l, err := accounting.NewLedger()
	if err != nil {
		t.Fatal(err)
	}
	cfg := aws.Config{}
	cfg.APIOptions = make([]func(*middleware.Stack) error, 0, 4)
	instrumented := l.Instrument(cfg)
	if len(cfg.APIOptions) != 0 || len(instrumented.APIOptions) != 1 {
		t.Fatalf("caller's APIOptions has %d entries and the copy %d; want 0 and 1", len(cfg.APIOptions), len(instrumented.APIOptions))
	}
	other := l.Instrument(cfg)
	other.APIOptions[0] = nil
	if instrumented.APIOptions[0] == nil {
		t.Fatal("two instrumented copies share their APIOptions backing array")
	}
}

func TestBilledRequestsFollowThe64KiBChunk(t *testing.T) {
	for _, c := range []struct {
		size int
		want int64
	}{
		{0, 1}, {1, 1}, {64 * 1024, 1}, {64*1024 + 1, 2}, {256 * 1024, 4}, {1024 * 1024, 16},
	} {
		if got := accounting.BilledRequests(c.size); got != c.want {
			t.Errorf("BilledRequests(%d) = %d, want %d", c.size, got, c.want)
		}
	}
}

func TestEstimatePricesSQSRequestsAndDynamoDBUnits(t *testing.T) {
	usage := map[accounting.Key]accounting.Usage{
		{Service: "SQS", Operation: "SendMessageBatch"}:     {Requests: 1_000_000, Billed: 2_000_000},
		{Service: "DynamoDB", Operation: "PutItem"}:         {Requests: 1_000_000, WriteUnits: 1_000_000},
		{Service: "DynamoDB", Operation: "GetItem"}:         {Requests: 4_000_000, ReadUnits: 2_000_000},
		{Service: "Scheduler", Operation: "CreateSchedule"}: {Requests: 7, Billed: 7},
	}
	e := accounting.EstimateCost(usage, accounting.USEast1)
	near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
	if !near(e.SQS, 0.80) || !near(e.DynamoDB, 0.625+0.25) || !near(e.Total(), 1.675) || e.Unpriced != 7 {
		t.Fatalf("estimate = %+v (total %v); want SQS $0.80, DynamoDB $0.875, total $1.675, 7 unpriced", e, e.Total())
	}
	month := e.Scale(time.Hour, 30*24*time.Hour)
	if !near(month.Total(), 1.675*720) {
		t.Fatalf("scaled to a month: $%v, want $%v", month.Total(), 1.675*720)
	}
	if s := e.String(); !strings.Contains(s, "estimated") || !strings.Contains(s, "us-east-1") {
		t.Fatalf("String() = %q; it must say it is an estimate and at which prices", s)
	}
}

func TestWriteTableListsEveryOperationAndTheTotal(t *testing.T) {
	cfg, _ := failingEndpoint(t)
	l, err := accounting.NewLedger()
	if err != nil {
		t.Fatal(err)
	}
	client := sqs.NewFromConfig(l.Instrument(cfg))
	_, _ = client.GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: aws.String("q")})
	_, _ = client.ListQueues(context.Background(), &sqs.ListQueuesInput{})
	table := l.Table()
	for _, want := range []string{"GetQueueUrl", "ListQueues", "total", "estimated cost"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	lines := strings.Split(strings.TrimSpace(table), "\n")
	total := strings.Fields(lines[len(lines)-2])
	if total[0] != "total" || total[1] != "6" {
		t.Errorf("total row = %v, want 6 requests:\n%s", total, table)
	}
}

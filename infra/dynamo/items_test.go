package dynamo

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store/storetest"
)

func TestCheckpointKeysSortByEpoch(t *testing.T) {
	epochs := []int64{1, 9, 10, 99, 100, 1 << 40, 1<<63 - 1}
	keys := make([]string, len(epochs))
	for i, e := range epochs {
		keys[i] = checkpointKey(e)
	}
	if !sort.StringsAreSorted(keys) {
		t.Fatalf("checkpoint keys do not sort as their epochs: %v", keys)
	}
	if got := checkpointKey(7); got != "cp#00000000000000000007" {
		t.Fatalf("checkpointKey(7) = %q", got)
	}
}

func TestJobKeyRoundTrip(t *testing.T) {
	id, err := jobIDOf(jobKey("orders-v2"))
	if err != nil || id != "orders-v2" {
		t.Fatalf("jobIDOf(jobKey) = %q, %v", id, err)
	}
	for _, bad := range []string{"orders", "job#", "cfg#x"} {
		if _, err := jobIDOf(bad); err == nil {
			t.Errorf("jobIDOf(%q) accepted a key that is not a job's", bad)
		}
	}
}

func TestItemsRoundTrip(t *testing.T) {
	id := job.ID("orders")
	t.Run("config", func(t *testing.T) {
		cfg := storetest.Config(id)
		item, err := marshal(configItem{PK: jobKey(id), SK: skConfig, Active: activeValue, Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		for _, attr := range []string{"pk", "sk", "active", "version", "spec", "checkpoint_interval", "restart_policy"} {
			if _, ok := item[attr]; !ok {
				t.Errorf("config item lacks %q: %v", attr, keys(item))
			}
		}
		var back configItem
		if err := unmarshal(item, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back.Config, cfg) {
			t.Fatalf("config round trip:\n got  %+v\n want %+v", back.Config, cfg)
		}
	})
	t.Run("commands", func(t *testing.T) {
		c := storetest.Commands(id)
		it, err := newCommandsItem(3, "t", c)
		if err != nil {
			t.Fatal(err)
		}
		item, err := marshal(it)
		if err != nil {
			t.Fatal(err)
		}
		start := item["start"].(*types.AttributeValueMemberM).Value
		if _, ok := start["assignments_gz"].(*types.AttributeValueMemberB); !ok {
			t.Fatalf("assignments are not stored as compressed binary: %v", keys(start))
		}
		var back commandsItem
		if err := unmarshal(item, &back); err != nil {
			t.Fatal(err)
		}
		got, err := back.commands()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c) || back.Fence != 3 {
			t.Fatalf("commands round trip:\n got  %+v (fence %d)\n want %+v", got, back.Fence, c)
		}
	})
	t.Run("checkpoint", func(t *testing.T) {
		cp := storetest.Checkpoint(id, 12)
		cp.FinishedAt = cp.StartedAt.Add(time.Second)
		it, err := newCheckpointItem(2, "t", cp)
		if err != nil {
			t.Fatal(err)
		}
		item, err := marshal(it)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := item["operators_gz"].(*types.AttributeValueMemberB); !ok {
			t.Fatalf("operator metadata is not stored as compressed binary: %v", keys(item))
		}
		var back checkpointItem
		if err := unmarshal(item, &back); err != nil {
			t.Fatal(err)
		}
		got, err := back.checkpoint()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, cp) {
			t.Fatalf("checkpoint round trip:\n got  %+v\n want %+v", got, cp)
		}
	})
}

func keys(m map[string]types.AttributeValue) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Metadata of a wide job compresses to a fraction: 4,096 subtasks with
// offsets and transaction ids fit in one item many times over.
func TestOperatorMetadataIsStoredCompactly(t *testing.T) {
	meta := make(map[int]string, 4096)
	for i := range 4096 {
		meta[i] = fmt.Sprintf(`{"topic":"orders","partition":%d,"offset":%d}`, i, 1_000_000+i*37)
	}
	cp := storetest.Checkpoint("orders", 1)
	cp.Operators = map[string]job.OperatorCheckpoint{"source": {Bytes: 1 << 30, Metadata: meta}}
	it, err := newCheckpointItem(1, "t", cp)
	if err != nil {
		t.Fatal(err)
	}
	item, err := marshal(it)
	if err != nil {
		t.Fatal(err)
	}
	raw := 0
	for _, m := range meta {
		raw += len(m)
	}
	size := itemSize(item)
	if size*4 > raw {
		t.Fatalf("checkpoint item is %d bytes for %d bytes of metadata; want at least 4x smaller", size, raw)
	}
	t.Logf("%d bytes of metadata stored in a %d-byte item", raw, size)
}

func TestItemSizeFollowsDynamoDBsRules(t *testing.T) {
	item := map[string]types.AttributeValue{
		"pk":   &types.AttributeValueMemberS{Value: "job#orders"},                                                                   // 2 + 10
		"n":    &types.AttributeValueMemberN{Value: "12345"},                                                                        // 1 + 4
		"b":    &types.AttributeValueMemberB{Value: make([]byte, 100)},                                                              // 1 + 100
		"flag": &types.AttributeValueMemberBOOL{Value: true},                                                                        // 4 + 1
		"m":    &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"k": &types.AttributeValueMemberS{Value: "v"}}}, // 1 + 3 + (1+1+1)
		"l":    &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberNULL{Value: true}}},           // 1 + 3 + (1+1)
		"ss":   &types.AttributeValueMemberSS{Value: []string{"ab", "c"}},                                                           // 2 + 2 + 1
		"ns":   &types.AttributeValueMemberNS{Value: []string{"12345", "-7"}},                                                       // 2 + 4 + 2
		"bs":   &types.AttributeValueMemberBS{Value: [][]byte{make([]byte, 3), make([]byte, 2)}},                                    // 2 + 3 + 2
	}
	if got, want := itemSize(item), 12+5+101+5+7+6+5+8+7; got != want {
		t.Fatalf("itemSize = %d, want %d", got, want)
	}
}

func TestOversizedRecordsAreRefused(t *testing.T) {
	big := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: strings.Repeat("x", MaxItemBytes)}}
	err := checkSize("checkpoint 3", "orders", big, 0, "keep less metadata")
	if !errors.Is(err, ErrItemTooLarge) {
		t.Fatalf("checkSize of a %d-byte item = %v, want ErrItemTooLarge", itemSize(big), err)
	}
	for _, want := range []string{"checkpoint 3 of job orders", "keep less metadata", "nothing was written"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	small := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "job#orders"}}
	if err := checkSize("status", "orders", small, statusHeadroom, ""); err != nil {
		t.Fatalf("checkSize of a small item: %v", err)
	}
}

func TestAttrNamesCoverEveryEncodedAttribute(t *testing.T) {
	// A status with every field set encodes exactly the names the update
	// sets or removes, so no stale attribute can survive a replacement.
	it := statusItem{PK: "p", SK: "s", Fence: 1, Status: storetest.Status("orders")}
	item, err := marshal(it)
	if err != nil {
		t.Fatal(err)
	}
	names := slices.Clone(statusAttrs)
	slices.Sort(names)
	if got := keys(item); !slices.Equal(got, names) {
		t.Fatalf("encoded status attributes %v, attrNames %v", got, names)
	}
	c, err := newCommandsItem(1, "t", storetest.Commands("orders"))
	if err != nil {
		t.Fatal(err)
	}
	item, err = marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	names = slices.Clone(commandsAttrs)
	slices.Sort(names)
	if got := keys(item); !slices.Equal(got, names) {
		t.Fatalf("encoded command attributes %v, attrNames %v", got, names)
	}
}

func TestRetryerRetriesThrottlingAndTransactionConflicts(t *testing.T) {
	r := NewRetryer()
	if r.MaxAttempts() < 8 {
		t.Fatalf("MaxAttempts = %d, want at least 8 for throttling", r.MaxAttempts())
	}
	conflict := &types.TransactionCanceledException{CancellationReasons: []types.CancellationReason{
		{Code: aws.String("None")}, {Code: aws.String("TransactionConflict")},
	}}
	condition := &types.TransactionCanceledException{CancellationReasons: []types.CancellationReason{
		{Code: aws.String("ConditionalCheckFailed")}, {Code: aws.String("TransactionConflict")},
	}}
	cases := []struct {
		err  error
		want bool
	}{
		{&types.ProvisionedThroughputExceededException{}, true},
		{&types.ThrottlingException{}, true},
		{&types.RequestLimitExceeded{}, true},
		{conflict, true},
		{condition, false},
		{&types.ConditionalCheckFailedException{}, false},
		{&types.ResourceNotFoundException{}, false},
	}
	for _, c := range cases {
		if got := r.IsErrorRetryable(c.err); got != c.want {
			t.Errorf("IsErrorRetryable(%T %v) = %v, want %v", c.err, c.err, got, c.want)
		}
	}
	// Throttles back off from a longer base than other errors.
	var throttled, other time.Duration
	for range 200 {
		d1, _ := r.RetryDelay(1, &types.ThrottlingException{})
		d2, _ := r.RetryDelay(1, conflict)
		throttled, other = max(throttled, d1), max(other, d2)
	}
	if throttled <= other || throttled > retryMaxBackoff || other > retryMaxBackoff {
		t.Fatalf("first retry delays: throttled up to %s, others up to %s; want throttled longer, both capped at %s", throttled, other, retryMaxBackoff)
	}
}

func TestLeaseConfigValidation(t *testing.T) {
	base := LeaseConfig{Table: "t", Name: "controller"}.withDefaults()
	if err := base.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if base.Owner == "" || base.Duration != 10*time.Second || base.RenewInterval != 2*time.Second || base.RenewDeadline != 6*time.Second {
		t.Fatalf("defaults = %+v", base)
	}
	cases := map[string]func(*LeaseConfig){
		"lease table name is empty":          func(c *LeaseConfig) { c.Table = "" },
		"lease name is empty":                func(c *LeaseConfig) { c.Name = "" },
		"must be longer than the renew":      func(c *LeaseConfig) { c.Duration = 6 * time.Second },
		"fewer than two renewals":            func(c *LeaseConfig) { c.RenewDeadline = 3 * time.Second },
		"renew interval 0s must be positive": func(c *LeaseConfig) { c.RenewInterval = 0 },
		"whole milliseconds":                 func(c *LeaseConfig) { c.Duration = 10*time.Second + time.Microsecond },
		"renew less often":                   func(c *LeaseConfig) { c.RenewInterval = 10 * time.Millisecond },
	}
	for want, mutate := range cases {
		c := base
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate after %q = %v", want, err)
		}
	}
}

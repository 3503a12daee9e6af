package dynamo

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store/storetest"
)

// FuzzDecodeItem feeds arbitrary stored items, written in DynamoDB's JSON
// (the wire form of an attribute map), to every decoder that turns a
// stored item into a domain value: the config, status, command record,
// checkpoint and lease items, and what a failed condition's old item is
// classified by. A corrupt or foreign item must come back as an error,
// never a panic.
func FuzzDecodeItem(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if item, err := parseItem(data); err == nil {
			decodeAll(item)
		}
	})
}

// FuzzStoreReads sends the same items through the real SDK client: every
// read of the store and the lease answers with the item, every write is
// refused with it as the stored item. It checks the whole path, the SDK's
// own decoding included, so it runs far fewer inputs per second than
// FuzzDecodeItem.
func FuzzStoreReads(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(throughStore)
}

// decodeAll runs every decoder on item. Errors are expected; only a
// panic fails (the fuzzer reports it with the input).
func decodeAll(item map[string]types.AttributeValue) {
	var cfg configItem
	_ = unmarshal(item, &cfg)
	var st statusItem
	_ = unmarshal(item, &st)
	var cmds commandsItem
	if unmarshal(item, &cmds) == nil {
		_, _ = cmds.commands()
	}
	var cp checkpointItem
	if unmarshal(item, &cp) == nil {
		_, _ = cp.checkpoint()
	}
	_, _ = decodeRecord(item)
	_ = storedOf(item)
	_, _ = jobIDOf(stringAttr(item, attrPK))
	_, _ = epochOfKey(stringAttr(item, attrSK))
	_ = itemSize(item)
}

// throughStore answers every read of a Store and a Lease with the fuzzed
// item, and every write with a failed condition carrying it, then calls
// each of their methods once.
func throughStore(t *testing.T, data []byte) {
	db := dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		Credentials:  aws.AnonymousCredentials{},
		BaseEndpoint: aws.String("http://fuzz.invalid"),
		HTTPClient:   itemServer(data),
		Retryer:      aws.NopRetryer{},
	})
	s, err := NewStore(db, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id := job.ID("fuzz")
	_, _ = s.GetConfig(ctx, id)
	_, _ = s.GetStatus(ctx, id)
	_, _ = s.GetCommands(ctx, id)
	_, _ = s.ListCheckpoints(ctx, id)
	_, _ = s.MaxEpoch(ctx, id)
	_, _ = s.ActiveJobs(ctx)
	_, _ = s.PutConfig(ctx, storetest.Config(id))
	_, _ = s.PutStatus(ctx, 2, job.Status{JobID: id, Version: 1, State: job.Running})
	_, _ = s.PutCommands(ctx, 2, job.Commands{JobID: id, RunID: 1})
	_ = s.CreateCheckpoint(ctx, 2, job.Checkpoint{JobID: id, Epoch: 3, RunID: 1, State: job.CheckpointInProgress})
	_ = s.UpdateCheckpoint(ctx, 2, job.Checkpoint{JobID: id, Epoch: 3, RunID: 1, State: job.CheckpointReady})
	_ = s.Claim(ctx, 2, id)
	l, err := NewLease(db, LeaseConfig{Table: "leases", Name: "controller"})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = l.Record(ctx)
	if ctx.Err() != nil {
		t.Fatalf("the store hung on item %q", data)
	}
}

// itemServer is a DynamoDB endpoint whose only item is body: reads return
// it, queries return it as their one item, and writes fail their condition
// with it as the stored item.
type itemServer []byte

func (body itemServer) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	op := r.Header.Get("X-Amz-Target")
	op = op[strings.LastIndexByte(op, '.')+1:]
	status := http.StatusOK
	var out []byte
	switch op {
	case "GetItem":
		out = fmt.Appendf(nil, `{"Item":%s}`, body)
	case "Query":
		out = fmt.Appendf(nil, `{"Items":[%s],"Count":1,"ScannedCount":1}`, body)
	case "UpdateItem", "PutItem", "DeleteItem":
		status = http.StatusBadRequest
		out = fmt.Appendf(nil, `{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed","Item":%s}`, body)
	case "TransactWriteItems":
		status = http.StatusBadRequest
		out = fmt.Appendf(nil, `{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"cancelled","CancellationReasons":[{"Code":"ConditionalCheckFailed","Item":%s}]}`, body)
	default:
		out = []byte(`{}`)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/x-amz-json-1.0")
	return &http.Response{
		StatusCode: status, Status: http.StatusText(status),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(out)), ContentLength: int64(len(out)),
		Request: r,
	}, nil
}

// parseItem reads an attribute map in DynamoDB's JSON:
// {"pk":{"S":"job#a"},"version":{"N":"3"},"start":{"M":{…}}}.
func parseItem(data []byte) (map[string]types.AttributeValue, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	return parseMap(raw, 0)
}

const maxDepth = 32 // DynamoDB's own nesting limit

func parseMap(raw map[string]json.RawMessage, depth int) (map[string]types.AttributeValue, error) {
	item := make(map[string]types.AttributeValue, len(raw))
	for name, v := range raw {
		av, err := parseValue(v, depth)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		item[name] = av
	}
	return item, nil
}

func parseValue(data json.RawMessage, depth int) (types.AttributeValue, error) {
	if depth > maxDepth {
		return nil, errors.New("nested too deeply")
	}
	var typed map[string]json.RawMessage
	if err := json.Unmarshal(data, &typed); err != nil {
		return nil, err
	}
	if len(typed) != 1 {
		return nil, errors.New("an attribute value has exactly one type")
	}
	for typ, v := range typed {
		switch typ {
		case "S":
			var s string
			return &types.AttributeValueMemberS{Value: s}, json.Unmarshal(v, &s)
		case "N":
			var s string
			err := json.Unmarshal(v, &s)
			return &types.AttributeValueMemberN{Value: s}, err
		case "B":
			var b []byte
			err := json.Unmarshal(v, &b)
			return &types.AttributeValueMemberB{Value: b}, err
		case "BOOL":
			var b bool
			err := json.Unmarshal(v, &b)
			return &types.AttributeValueMemberBOOL{Value: b}, err
		case "NULL":
			return &types.AttributeValueMemberNULL{Value: true}, nil
		case "SS", "NS":
			var ss []string
			if err := json.Unmarshal(v, &ss); err != nil {
				return nil, err
			}
			if typ == "NS" {
				return &types.AttributeValueMemberNS{Value: ss}, nil
			}
			return &types.AttributeValueMemberSS{Value: ss}, nil
		case "BS":
			var bs [][]byte
			err := json.Unmarshal(v, &bs)
			return &types.AttributeValueMemberBS{Value: bs}, err
		case "M":
			var m map[string]json.RawMessage
			if err := json.Unmarshal(v, &m); err != nil {
				return nil, err
			}
			inner, err := parseMap(m, depth+1)
			return &types.AttributeValueMemberM{Value: inner}, err
		case "L":
			var l []json.RawMessage
			if err := json.Unmarshal(v, &l); err != nil {
				return nil, err
			}
			list := make([]types.AttributeValue, 0, len(l))
			for _, e := range l {
				av, err := parseValue(e, depth+1)
				if err != nil {
					return nil, err
				}
				list = append(list, av)
			}
			return &types.AttributeValueMemberL{Value: list}, nil
		}
		return nil, fmt.Errorf("unknown attribute type %q", typ)
	}
	panic("unreachable")
}

// formatItem writes an attribute map in DynamoDB's JSON, the inverse of
// parseItem, for the seeds.
func formatItem(item map[string]types.AttributeValue) []byte {
	var b bytes.Buffer
	writeMap(&b, item)
	return b.Bytes()
}

func writeMap(b *bytes.Buffer, m map[string]types.AttributeValue) {
	b.WriteByte('{')
	first := true
	for name, v := range m {
		if !first {
			b.WriteByte(',')
		}
		first = false
		writeJSON(b, name)
		b.WriteByte(':')
		writeValue(b, v)
	}
	b.WriteByte('}')
}

func writeValue(b *bytes.Buffer, v types.AttributeValue) {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		b.WriteString(`{"S":`)
		writeJSON(b, v.Value)
	case *types.AttributeValueMemberN:
		b.WriteString(`{"N":`)
		writeJSON(b, v.Value)
	case *types.AttributeValueMemberB:
		b.WriteString(`{"B":`)
		writeJSON(b, base64.StdEncoding.EncodeToString(v.Value))
	case *types.AttributeValueMemberBOOL:
		b.WriteString(`{"BOOL":`)
		writeJSON(b, v.Value)
	case *types.AttributeValueMemberNULL:
		b.WriteString(`{"NULL":true`)
	case *types.AttributeValueMemberSS:
		b.WriteString(`{"SS":`)
		writeJSON(b, v.Value)
	case *types.AttributeValueMemberNS:
		b.WriteString(`{"NS":`)
		writeJSON(b, v.Value)
	case *types.AttributeValueMemberBS:
		b.WriteString(`{"BS":`)
		writeJSON(b, v.Value)
	case *types.AttributeValueMemberM:
		b.WriteString(`{"M":`)
		writeMap(b, v.Value)
	case *types.AttributeValueMemberL:
		b.WriteString(`{"L":[`)
		for i, e := range v.Value {
			if i > 0 {
				b.WriteByte(',')
			}
			writeValue(b, e)
		}
		b.WriteByte(']')
	}
	b.WriteByte('}')
}

func writeJSON(b *bytes.Buffer, v any) {
	out, _ := json.Marshal(v)
	b.Write(out)
}

// fuzzSeeds are real items of every kind, as the store writes them, and a
// few damaged ones.
func fuzzSeeds(tb testing.TB) [][]byte {
	id := job.ID("orders")
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	must := func(m map[string]types.AttributeValue, err error) map[string]types.AttributeValue {
		if err != nil {
			tb.Fatal(err)
		}
		return m
	}
	cfg := storetest.Config(id)
	cfg.Version = 3
	cmds, err := newCommandsItem(2, "tok", job.Commands{JobID: id, RunID: 4, Version: 9,
		Start: &job.StartCommand{Program: "demo", RestoreEpoch: 7, Assignments: []job.TaskAssignment{
			{WorkerID: "w-0", OperatorID: "source", Subtask: 0},
		}},
		Checkpoint: &job.CheckpointCommand{Epoch: 8, MinEpoch: 1, ThenStop: true},
		Commit:     &job.CommitCommand{Epoch: 8},
		Stop:       &job.StopCommand{Mode: job.StopGraceful},
	})
	if err != nil {
		tb.Fatal(err)
	}
	cp, err := newCheckpointItem(2, "tok", job.Checkpoint{JobID: id, Epoch: 8, RunID: 4, State: job.CheckpointReady,
		StartedAt: now, FinishedAt: now.Add(time.Second),
		Operators: map[string]job.OperatorCheckpoint{"source": {Bytes: 100, Metadata: map[int]string{0: "s3://state/0"}}}})
	if err != nil {
		tb.Fatal(err)
	}
	items := []map[string]types.AttributeValue{
		must(marshal(configItem{PK: jobKey(id), SK: skConfig, Active: activeValue, Token: "tok", Config: cfg})),
		must(marshal(statusItem{PK: jobKey(id), SK: skStatus, Fence: 2, Token: "tok", Status: job.Status{
			JobID: id, Version: 5, State: job.Running, RunID: 4, Restarts: 1, StartedAt: now,
			Failure: &job.Failure{Message: "worker w-0 sent nothing", Domain: job.DomainInternal},
		}})),
		must(marshal(cmds)),
		must(marshal(cp)),
		must(marshal(leaseRecord{Name: "controller", Owner: "host-1", RVN: "abc", Fence: 7, LeaseMS: 10000, RenewedAt: now.Format(time.RFC3339)})),
	}
	var seeds [][]byte
	for _, it := range items {
		seeds = append(seeds, formatItem(it))
	}
	return append(seeds,
		[]byte(`{}`),
		[]byte(`{"pk":{"S":"job#orders"},"sk":{"S":"status"},"fence":{"N":"3"},"max_epoch":{"N":"12"}}`),
		[]byte(`{"pk":{"S":"job#"},"sk":{"S":"cp#notanumber"},"epoch":{"S":"7"},"operators_gz":{"B":"H4sIAAAAAAAA/w=="}}`),
		[]byte(`{"pk":{"N":"1"},"version":{"N":"1e400"},"fence":{"N":"-9223372036854775809"},"start":{"M":{"assignments_gz":{"B":"AAAA"}}}}`),
		[]byte(`{"pk":{"S":"job#x"},"sk":{"S":"config"},"spec":{"L":[{"NULL":true}]},"ttl":{"S":"forever"},"restart_policy":{"SS":["a"]}}`),
		[]byte(`{"released":{"S":"yes"},"lease_ms":{"N":"-1"},"fence":{"BOOL":true}}`),
	)
}

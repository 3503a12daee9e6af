package dynamo

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/weirstream/weir/core/job"
)

// Attribute names and key values of the Jobs table (docs/data-model.md).
const (
	attrPK       = "pk"
	attrSK       = "sk"
	attrVersion  = "version"
	attrFence    = "fence"
	attrActive   = "active"
	attrMaxEpoch = "max_epoch"
	attrEpoch    = "epoch"

	// Write tokens (see tokens.go): the token of the last record write of
	// an item, of the last epoch reservation, and of the last transaction
	// (park), the last two on the status item.
	attrToken      = "wtok"
	attrEpochToken = "etok"
	attrBatchToken = "ttok"

	skConfig     = "config"
	skStatus     = "status"
	skCommands   = "commands"
	skCheckpoint = "cp#"

	activeValue = "1"
	activeIndex = "active-jobs"

	jobPrefix = "job#"
)

// MaxItemBytes is DynamoDB's limit on one item, names and values included.
const MaxItemBytes = 400 * 1024

// ErrItemTooLarge: a record would not fit in one DynamoDB item. Nothing was
// written.
var ErrItemTooLarge = errors.New("item exceeds DynamoDB's 400 KB limit")

func jobKey(id job.ID) string { return jobPrefix + string(id) }

func jobIDOf(pk string) (job.ID, error) {
	id, ok := strings.CutPrefix(pk, jobPrefix)
	if !ok || id == "" {
		return "", fmt.Errorf("partition key %q is not a job key (%s<id>)", pk, jobPrefix)
	}
	return job.ID(id), nil
}

// checkpointKey zero-pads the epoch to 20 digits (every int64) so the sort
// key orders epochs by number, which is what lets one Query list them oldest
// first and select those below a bound.
func checkpointKey(epoch int64) string { return fmt.Sprintf("%s%020d", skCheckpoint, epoch) }

// epochOfKey is the epoch a checkpoint sort key names.
func epochOfKey(sk string) (int64, bool) {
	digits, ok := strings.CutPrefix(sk, skCheckpoint)
	if !ok {
		return 0, false
	}
	e, err := strconv.ParseInt(digits, 10, 64)
	return e, err == nil
}

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrPK: &types.AttributeValueMemberS{Value: pk},
		attrSK: &types.AttributeValueMemberS{Value: sk},
	}
}

// Items are encoded with the json tag key: the domain types nested in them
// (spec, failure, restart policy, commands) already name their fields for
// the wire, and the stored attributes use the same names. Times are RFC 3339
// strings (the SDK's default), durations whole nanoseconds.
var (
	encoder = attributevalue.NewEncoder(func(o *attributevalue.EncoderOptions) { o.TagKey = "json" })
	decoder = attributevalue.NewDecoder(func(o *attributevalue.DecoderOptions) { o.TagKey = "json" })
)

func marshal(v any) (map[string]types.AttributeValue, error) {
	av, err := encoder.Encode(v)
	if err != nil {
		return nil, err
	}
	m, ok := av.(*types.AttributeValueMemberM)
	if !ok {
		return nil, fmt.Errorf("encode %T: got %T, want a map", v, av)
	}
	return m.Value, nil
}

func unmarshal(item map[string]types.AttributeValue, v any) error {
	return decoder.Decode(&types.AttributeValueMemberM{Value: item}, v)
}

// configItem is sk "config": the desired config, and `active` while the job
// is on the active-jobs index.
type configItem struct {
	PK     string `json:"pk"`
	SK     string `json:"sk"`
	Active string `json:"active,omitempty"`
	Token  string `json:"wtok,omitempty"`
	job.Config
}

// statusItem is sk "status": the controller's status. The same item holds
// the job's epoch counter (max_epoch), the highest fence any controller
// wrote or claimed it under, and the tokens of the last epoch reservation
// and transaction; status writes leave those alone.
type statusItem struct {
	PK    string `json:"pk"`
	SK    string `json:"sk"`
	Fence int64  `json:"fence"`
	Token string `json:"wtok"`
	job.Status
}

// commandsItem is sk "commands", the record workers poll. Task assignments
// are stored gzipped (assignments_gz): a job at full parallelism has
// thousands, and every worker read pays for the item's size.
type commandsItem struct {
	PK         string                 `json:"pk"`
	SK         string                 `json:"sk"`
	Fence      int64                  `json:"fence"`
	Token      string                 `json:"wtok"`
	JobID      job.ID                 `json:"job_id"`
	RunID      int64                  `json:"run_id"`
	Version    int64                  `json:"version"`
	Start      *startAttr             `json:"start,omitempty"`
	Checkpoint *job.CheckpointCommand `json:"checkpoint,omitempty"`
	Commit     *job.CommitCommand     `json:"commit,omitempty"`
	Stop       *job.StopCommand       `json:"stop,omitempty"`
	// CheckpointInterval is whole nanoseconds, like every duration.
	CheckpointInterval time.Duration `json:"checkpoint_interval,omitempty"`
}

type startAttr struct {
	Program       string `json:"program"`
	RestoreEpoch  int64  `json:"restore_epoch"`
	AssignmentsGz []byte `json:"assignments_gz,omitempty"`
}

// checkpointItem is sk "cp#<epoch>". Operator metadata is stored gzipped
// (operators_gz): one entry per subtask of every operator, opaque strings
// that compress well.
type checkpointItem struct {
	PK          string              `json:"pk"`
	SK          string              `json:"sk"`
	Fence       int64               `json:"fence"`
	Token       string              `json:"wtok,omitempty"`
	JobID       job.ID              `json:"job_id"`
	Epoch       int64               `json:"epoch"`
	RunID       int64               `json:"run_id"`
	State       job.CheckpointState `json:"state"`
	ThenStop    bool                `json:"then_stop,omitempty"`
	StartedAt   time.Time           `json:"started_at"`
	FinishedAt  time.Time           `json:"finished_at,omitempty"`
	Failure     string              `json:"failure,omitempty"`
	OperatorsGz []byte              `json:"operators_gz,omitempty"`
}

func newCommandsItem(f int64, tok string, c job.Commands) (commandsItem, error) {
	it := commandsItem{
		PK: jobKey(c.JobID), SK: skCommands, Fence: f, Token: tok,
		JobID: c.JobID, RunID: c.RunID, Version: c.Version,
		Checkpoint: c.Checkpoint, Commit: c.Commit, Stop: c.Stop,
		CheckpointInterval: c.CheckpointInterval,
	}
	if c.Start != nil {
		gz, err := gzipJSON(c.Start.Assignments)
		if err != nil {
			return it, fmt.Errorf("encode task assignments: %w", err)
		}
		it.Start = &startAttr{Program: c.Start.Program, RestoreEpoch: c.Start.RestoreEpoch, AssignmentsGz: gz}
	}
	return it, nil
}

func (it commandsItem) commands() (job.Commands, error) {
	c := job.Commands{
		JobID: it.JobID, RunID: it.RunID, Version: it.Version,
		Checkpoint: it.Checkpoint, Commit: it.Commit, Stop: it.Stop,
		CheckpointInterval: it.CheckpointInterval,
	}
	if it.Start != nil {
		c.Start = &job.StartCommand{Program: it.Start.Program, RestoreEpoch: it.Start.RestoreEpoch}
		if err := gunzipJSON(it.Start.AssignmentsGz, &c.Start.Assignments); err != nil {
			return c, fmt.Errorf("decode task assignments of job %s: %w", it.JobID, err)
		}
	}
	return c, nil
}

func newCheckpointItem(f int64, tok string, cp job.Checkpoint) (checkpointItem, error) {
	it := checkpointItem{
		PK: jobKey(cp.JobID), SK: checkpointKey(cp.Epoch), Fence: f, Token: tok,
		JobID: cp.JobID, Epoch: cp.Epoch, RunID: cp.RunID, State: cp.State,
		ThenStop: cp.ThenStop, StartedAt: cp.StartedAt, FinishedAt: cp.FinishedAt,
		Failure: cp.Failure,
	}
	if cp.Operators != nil {
		gz, err := gzipJSON(cp.Operators)
		if err != nil {
			return it, fmt.Errorf("encode operator metadata: %w", err)
		}
		it.OperatorsGz = gz
	}
	return it, nil
}

func (it checkpointItem) checkpoint() (job.Checkpoint, error) {
	cp := job.Checkpoint{
		JobID: it.JobID, Epoch: it.Epoch, RunID: it.RunID, State: it.State,
		ThenStop: it.ThenStop, StartedAt: it.StartedAt, FinishedAt: it.FinishedAt,
		Failure: it.Failure,
	}
	if err := gunzipJSON(it.OperatorsGz, &cp.Operators); err != nil {
		return cp, fmt.Errorf("decode operator metadata of checkpoint %d of job %s: %w", it.Epoch, it.JobID, err)
	}
	return cp, nil
}

func gzipJSON(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// gunzipJSON leaves v untouched when data is empty (the attribute was
// omitted because there was nothing to store).
func gunzipJSON(data []byte, v any) error {
	if len(data) == 0 {
		return nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// itemSize is the size DynamoDB charges and limits an item by: attribute
// names plus values, with its documented overheads for numbers, maps and
// lists. It errs on the large side (a number counts as 21 bytes at most).
func itemSize(item map[string]types.AttributeValue) int {
	n := 0
	for name, v := range item {
		n += len(name) + valueSize(v)
	}
	return n
}

func valueSize(v types.AttributeValue) int {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return len(v.Value)
	case *types.AttributeValueMemberN:
		return numberSize(v.Value)
	case *types.AttributeValueMemberB:
		return len(v.Value)
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberSS:
		return setSize(v.Value, func(s string) int { return len(s) })
	case *types.AttributeValueMemberNS:
		return setSize(v.Value, numberSize)
	case *types.AttributeValueMemberBS:
		return setSize(v.Value, func(b []byte) int { return len(b) })
	case *types.AttributeValueMemberM:
		n := 3
		for name, e := range v.Value {
			n += len(name) + valueSize(e) + 1
		}
		return n
	case *types.AttributeValueMemberL:
		n := 3
		for _, e := range v.Value {
			n += valueSize(e) + 1
		}
		return n
	}
	return 0
}

// setSize is a set's size: its elements' sizes, with no overhead.
func setSize[E any](set []E, size func(E) int) int {
	n := 0
	for _, e := range set {
		n += size(e)
	}
	return n
}

func numberSize(s string) int {
	digits := strings.TrimLeft(strings.TrimPrefix(s, "-"), "0")
	digits = strings.Replace(digits, ".", "", 1)
	return min(len(digits)/2+2, 21)
}

// statusHeadroom leaves room for the attributes a status write keeps but
// does not send (max_epoch).
const statusHeadroom = 64

func checkSize(what string, id job.ID, item map[string]types.AttributeValue, headroom int, hint string) error {
	if n := itemSize(item) + headroom; n > MaxItemBytes {
		return fmt.Errorf("%s of job %s would take %d bytes (%w, %d bytes): %s; nothing was written", what, id, n, ErrItemTooLarge, MaxItemBytes, hint)
	}
	return nil
}

// attrNames lists the attribute names a struct encodes to (its json tag
// names, embedded structs flattened), so a write that replaces a record
// field by field can remove the fields the new value omits.
func attrNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			names = append(names, attrNames(f.Type)...)
			continue
		}
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// stringAttr is a string attribute's value, or "" when it is absent.
func stringAttr(item map[string]types.AttributeValue, name string) string {
	if v, ok := item[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func numberAttr(item map[string]types.AttributeValue, name string) (int64, bool) {
	n, ok := item[name].(*types.AttributeValueMemberN)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// ItemBytes is the size DynamoDB bills (1 KB write units, 4 KB read units)
// and limits an item by, for the record v as this store writes it: a
// job.Config, job.Status, job.Commands or job.Checkpoint, with its key,
// fence and write token. Cost models use it so that they bill the items
// the store really writes (gzipped assignments and operator metadata), not
// the records' JSON.
func ItemBytes(v any) (int, error) {
	tok := newToken()
	var (
		it       any
		headroom int
	)
	switch v := v.(type) {
	case job.Config:
		it = configItem{PK: jobKey(v.JobID), SK: skConfig, Active: activeValue, Token: tok, Config: v}
	case job.Status:
		it, headroom = statusItem{PK: jobKey(v.JobID), SK: skStatus, Fence: 1, Token: tok, Status: v}, statusHeadroom
	case job.Commands:
		c, err := newCommandsItem(1, tok, v)
		if err != nil {
			return 0, err
		}
		it = c
	case job.Checkpoint:
		c, err := newCheckpointItem(1, tok, v)
		if err != nil {
			return 0, err
		}
		it = c
	default:
		return 0, fmt.Errorf("dynamo: ItemBytes of a %T: want a job.Config, job.Status, job.Commands or job.Checkpoint", v)
	}
	item, err := marshal(it)
	if err != nil {
		return 0, err
	}
	return itemSize(item) + headroom, nil
}

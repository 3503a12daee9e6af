package protocol

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

var sentAt = time.Date(2026, 3, 1, 12, 0, 0, 250_000_000, time.UTC)

// fullEnvelope is a v1 envelope with a heartbeat and one event of every
// kind.
func fullEnvelope() *Envelope {
	return &Envelope{
		V: V1, JobID: "orders-enrich", RunID: 3, WorkerID: "w-1", Seq: 42, SentAt: sentAt,
		Heartbeat: &Heartbeat{Metrics: []TaskMetrics{
			{Operator: "source", Subtask: 0, RecordsIn: 10, RecordsOut: 10, BytesIn: 900, BytesOut: 800, Backpressure: 0.25, WatermarkMs: 1_772_366_400_000},
			{Operator: "sink", Subtask: 1, RecordsIn: 10, Backpressure: 1},
		}},
		Events: []Event{
			{Kind: WorkerRegistered, Slots: 4},
			{Kind: TaskStarted, Operator: "source", Subtask: 0},
			{Kind: CheckpointEvent, Operator: "source", Subtask: 0, Epoch: 7, Phase: PhaseSyncFinished},
			{Kind: CheckpointCompleted, Operator: "source", Subtask: 0, Epoch: 7, Bytes: 4096, Metadata: "s3://bucket/orders/7/source-0"},
			{Kind: CommitFinished, Operator: "sink", Subtask: 1, Epoch: 7},
			{Kind: NonFatalError, Operator: "sink", Subtask: 1, Error: "slow flush", Domain: "external"},
			{Kind: TaskFailed, Operator: "sink", Subtask: 1, Error: "connection refused", Domain: "external", Retry: RetryBackoff},
			{Kind: TaskFinished, Operator: "source", Subtask: 0},
		},
	}
}

// fullEnvelopeV2 is a v2 envelope with a subtask in every state and both
// kinds of v2 event.
func fullEnvelopeV2() *Envelope {
	return &Envelope{
		V: V2, JobID: "orders-enrich", RunID: 3, WorkerID: "w-1", Seq: 42, SentAt: sentAt, Slots: 4,
		Tasks: []Task{
			{Operator: "source", Subtask: 0, State: Running, RecordsIn: 10, RecordsOut: 10, BytesIn: 900, BytesOut: 800,
				Backpressure: 0.25, WatermarkMs: 1_772_366_400_000, Checkpointed: 7, CheckpointBytes: 4096, CheckpointMetadata: "s3://bucket/orders/7/source-0"},
			{Operator: "sink", Subtask: 1, State: Failed, RecordsIn: 10, Backpressure: 1, Checkpointed: 7, Committed: 7,
				Error: "connection refused", Domain: "external", Retry: RetryBackoff},
			{Operator: "sink", Subtask: 0, State: Finished, Checkpointed: 7, Committed: 7},
			{Operator: "map", Subtask: 0, State: Scheduled},
		},
		Events: []Event{
			{Kind: CheckpointEvent, Operator: "source", Subtask: 0, Epoch: 8, Phase: PhaseSyncFinished},
			{Kind: NonFatalError, Operator: "sink", Subtask: 1, Error: "slow flush", Domain: "external"},
		},
	}
}

func taskAt(i int, f func(t *Task)) func(*Envelope) {
	return func(e *Envelope) { f(&e.Tasks[i]) }
}

func mustEncode(t testing.TB, e *Envelope) []byte {
	t.Helper()
	data, err := Encode(e)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return data
}

func TestRoundTrip(t *testing.T) {
	cases := map[string]*Envelope{
		"full":    fullEnvelope(),
		"full v2": fullEnvelopeV2(),
		"v2 registration only": {
			V: V2, JobID: "j", RunID: 1, WorkerID: "w", Seq: 1, SentAt: sentAt, Slots: 1,
		},
		"heartbeat only": {
			V: 1, JobID: "j", RunID: 1, WorkerID: "w", Seq: 1, SentAt: sentAt, Heartbeat: &Heartbeat{},
		},
		"events only": {
			V: 1, JobID: "j", RunID: 1, WorkerID: "w", Seq: 1, SentAt: sentAt,
			Events: []Event{{Kind: TaskFailed, Operator: "source", Subtask: 3, Error: "cannot load program", Domain: "user", Retry: RetryNone}},
		},
	}
	for name, env := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := Decode(mustEncode(t, env))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, env) {
				t.Fatalf("round trip changed the envelope:\n got %+v\nwant %+v", got, env)
			}
		})
	}
}

func TestDecodeNormalizes(t *testing.T) {
	body := `{"v":1,"job":"j","run":1,"worker":"w","seq":1,"sent_at":"2026-03-01T14:00:00+02:00",
		"heartbeat":{"metrics":[]},"events":[]}`
	env, err := Decode([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if env.SentAt.Location() != time.UTC || !env.SentAt.Equal(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("sent_at = %v, want 12:00 UTC", env.SentAt)
	}
	if env.Events != nil || env.Heartbeat.Metrics != nil {
		t.Errorf("empty lists not normalized to nil: %#v %#v", env.Events, env.Heartbeat.Metrics)
	}
}

// rejection is one envelope Decode must refuse, and the field it must name.
type rejection struct {
	name    string
	mutate  func(e *Envelope)
	field   string
	problem string // a fragment of the explanation
}

func eventAt(i int, f func(ev *Event)) func(*Envelope) {
	return func(e *Envelope) { f(&e.Events[i]) }
}

func rejections() []rejection {
	long := strings.Repeat("x", MaxNameBytes+1)
	return []rejection{
		{"version missing", func(e *Envelope) { e.V = 0 }, "v", "missing"},
		{"job missing", func(e *Envelope) { e.JobID = "" }, "job", "missing"},
		{"job invalid", func(e *Envelope) { e.JobID = "no spaces please" }, "job", "invalid"},
		{"run zero", func(e *Envelope) { e.RunID = 0 }, "run", "at least 1"},
		{"run negative", func(e *Envelope) { e.RunID = -4 }, "run", "got -4"},
		{"worker missing", func(e *Envelope) { e.WorkerID = "" }, "worker", "missing"},
		{"worker too long", func(e *Envelope) { e.WorkerID = long }, "worker", "more than 256"},
		{"worker control chars", func(e *Envelope) { e.WorkerID = "w\n1" }, "worker", "control"},
		{"seq zero", func(e *Envelope) { e.Seq = 0 }, "seq", "at least 1"},
		{"sent_at missing", func(e *Envelope) { e.SentAt = time.Time{} }, "sent_at", "missing"},
		{"nothing to say", func(e *Envelope) { e.Heartbeat, e.Events = nil, nil }, "heartbeat", "missing"},
		{"too many events", func(e *Envelope) {
			e.Events = make([]Event, MaxEvents+1)
			for i := range e.Events {
				e.Events[i] = Event{Kind: TaskStarted, Operator: "o"}
			}
		}, "events", "more than the 1024"},
		{"too many metrics", func(e *Envelope) {
			e.Heartbeat.Metrics = make([]TaskMetrics, MaxMetrics+1)
			for i := range e.Heartbeat.Metrics {
				e.Heartbeat.Metrics[i] = TaskMetrics{Operator: "o", Subtask: i}
			}
		}, "heartbeat.metrics", "more than the 512"},
		{"metric op missing", func(e *Envelope) { e.Heartbeat.Metrics[1].Operator = "" }, "heartbeat.metrics[1].op", "missing"},
		{"metric subtask negative", func(e *Envelope) { e.Heartbeat.Metrics[1].Subtask = -1 }, "heartbeat.metrics[1].subtask", "from 0 to 4095"},
		{"metric subtask too high", func(e *Envelope) { e.Heartbeat.Metrics[0].Subtask = 4096 }, "heartbeat.metrics[0].subtask", "got 4096"},
		{"metric backpressure above 1", func(e *Envelope) { e.Heartbeat.Metrics[0].Backpressure = 1.5 }, "heartbeat.metrics[0].backpressure", "0 to 1"},
		{"metric backpressure negative", func(e *Envelope) { e.Heartbeat.Metrics[0].Backpressure = -0.1 }, "heartbeat.metrics[0].backpressure", "0 to 1"},
		{"metric watermark negative", func(e *Envelope) { e.Heartbeat.Metrics[0].WatermarkMs = -1 }, "heartbeat.metrics[0].watermark_ms", "negative"},
		{"metric repeated", func(e *Envelope) {
			e.Heartbeat.Metrics[1].Operator, e.Heartbeat.Metrics[1].Subtask = "source", 0
		}, "heartbeat.metrics[1]", "repeats op \"source\" subtask 0 of metrics[0]"},
		{"kind missing", eventAt(3, func(ev *Event) { ev.Kind = "" }), "events[3].kind", "missing"},
		{"kind unknown", eventAt(3, func(ev *Event) { ev.Kind = "task_paused" }), "events[3].kind", `"task_paused" is not an event kind`},
		{"subtask negative", eventAt(1, func(ev *Event) { ev.Subtask = -2 }), "events[1].subtask", "got -2"},
		{"op too long", eventAt(1, func(ev *Event) { ev.Operator = long }), "events[1].op", "more than 256"},
		{"registered without slots", eventAt(0, func(ev *Event) { ev.Slots = 0 }), "events[0].slots", "from 1 to 1024"},
		{"registered with too many slots", eventAt(0, func(ev *Event) { ev.Slots = MaxSlots + 1 }), "events[0].slots", "got 1025"},
		{"registered with a subtask", eventAt(0, func(ev *Event) { ev.Subtask = 2 }), "events[0].subtask", "must be 0"},
		{"registered with an op", eventAt(0, func(ev *Event) { ev.Operator = "source" }), "events[0].op", "not used by worker_registered"},
		{"started without op", eventAt(1, func(ev *Event) { ev.Operator = "" }), "events[1].op", "missing"},
		{"started with an epoch", eventAt(1, func(ev *Event) { ev.Epoch = 3 }), "events[1].epoch", "not used by task_started"},
		{"finished without op", eventAt(7, func(ev *Event) { ev.Operator = "" }), "events[7].op", "missing"},
		{"checkpoint event without epoch", eventAt(2, func(ev *Event) { ev.Epoch = 0 }), "events[2].epoch", "must be at least 1"},
		{"checkpoint event negative epoch", eventAt(2, func(ev *Event) { ev.Epoch = -1 }), "events[2].epoch", "must be at least 1"},
		{"checkpoint event without op", eventAt(2, func(ev *Event) { ev.Operator = "" }), "events[2].op", "missing"},
		{"checkpoint event without phase", eventAt(2, func(ev *Event) { ev.Phase = "" }), "events[2].phase", "missing"},
		{"checkpoint event unknown phase", eventAt(2, func(ev *Event) { ev.Phase = "half_done" }), "events[2].phase", `"half_done" is unknown`},
		{"checkpoint completed without epoch", eventAt(3, func(ev *Event) { ev.Epoch = 0 }), "events[3].epoch", "must be at least 1"},
		{"checkpoint completed without op", eventAt(3, func(ev *Event) { ev.Operator = "" }), "events[3].op", "missing"},
		{"checkpoint completed negative bytes", eventAt(3, func(ev *Event) { ev.Bytes = -1 }), "events[3].bytes", "negative"},
		{"checkpoint completed huge metadata", eventAt(3, func(ev *Event) { ev.Metadata = strings.Repeat("m", MaxMetadataBytes+1) }), "events[3].metadata", "more than 1024"},
		{"checkpoint completed with retry", eventAt(3, func(ev *Event) { ev.Retry = RetryNone }), "events[3].retry", "not used by checkpoint_completed"},
		{"commit without epoch", eventAt(4, func(ev *Event) { ev.Epoch = 0 }), "events[4].epoch", "must be at least 1"},
		{"commit without op", eventAt(4, func(ev *Event) { ev.Operator = "" }), "events[4].op", "missing"},
		{"commit with bytes", eventAt(4, func(ev *Event) { ev.Bytes = 5 }), "events[4].bytes", "not used by commit_finished"},
		{"error without message", eventAt(5, func(ev *Event) { ev.Error = "" }), "events[5].error", "missing"},
		{"error unknown domain", eventAt(5, func(ev *Event) { ev.Domain = "cosmic" }), "events[5].domain", `"cosmic" is unknown`},
		{"error with retry", eventAt(5, func(ev *Event) { ev.Retry = RetryBackoff }), "events[5].retry", "not used by error"},
		{"error of a subtask without op", eventAt(5, func(ev *Event) { ev.Operator = "" }), "events[5].op", "name its operator"},
		{"failure without message", eventAt(6, func(ev *Event) { ev.Error = "" }), "events[6].error", "missing"},
		{"failure message too long", eventAt(6, func(ev *Event) { ev.Error = strings.Repeat("e", MaxErrorBytes+1) }), "events[6].error", "more than 4096"},
		{"failure without domain", eventAt(6, func(ev *Event) { ev.Domain = "" }), "events[6].domain", "missing"},
		{"failure unknown domain", eventAt(6, func(ev *Event) { ev.Domain = "network" }), "events[6].domain", `"network" is unknown`},
		{"failure without retry hint", eventAt(6, func(ev *Event) { ev.Retry = "" }), "events[6].retry", "missing"},
		{"failure unknown retry hint", eventAt(6, func(ev *Event) { ev.Retry = "later" }), "events[6].retry", `"later" is unknown`},
		{"failure without op", eventAt(6, func(ev *Event) { ev.Operator = "" }), "events[6].op", "missing"},
		{"failure with slots", eventAt(6, func(ev *Event) { ev.Slots = 1 }), "events[6].slots", "not used by task_failed"},
	}
}

// rejectionsV2 are the v2 envelopes Decode must refuse.
func rejectionsV2() []rejection {
	return []rejection{
		{"slots missing", func(e *Envelope) { e.Slots = 0 }, "slots", "from 1 to 1024"},
		{"too many slots", func(e *Envelope) { e.Slots = MaxSlots + 1 }, "slots", "got 1025"},
		{"a v1 heartbeat", func(e *Envelope) { e.Heartbeat = &Heartbeat{} }, "heartbeat", "field of protocol v1, not v2"},
		{"a v1 event", func(e *Envelope) {
			e.Events = append(e.Events, Event{Kind: TaskStarted, Operator: "source"})
		}, "events[2].kind", "tasks[].state"},
		{"registration event", func(e *Envelope) { e.Events[0] = Event{Kind: WorkerRegistered, Slots: 4} }, "events[0].kind", "every envelope registers"},
		{"too many tasks", func(e *Envelope) {
			e.Tasks = make([]Task, MaxTasks+1)
			for i := range e.Tasks {
				e.Tasks[i] = Task{Operator: "o", Subtask: i, State: Running}
			}
		}, "tasks", "more than the 512"},
		{"task repeated", taskAt(3, func(t *Task) { t.Operator = "source" }), "tasks[3]", `repeats op "source" subtask 0 of tasks[0]`},
		{"task op missing", taskAt(1, func(t *Task) { t.Operator = "" }), "tasks[1].op", "missing"},
		{"task subtask too high", taskAt(0, func(t *Task) { t.Subtask = 4096 }), "tasks[0].subtask", "got 4096"},
		{"task state missing", taskAt(0, func(t *Task) { t.State = "" }), "tasks[0].state", "missing: use one of scheduled, running, finished, failed"},
		{"task state unknown", taskAt(0, func(t *Task) { t.State = "paused" }), "tasks[0].state", `"paused" is unknown`},
		{"task backpressure", taskAt(0, func(t *Task) { t.Backpressure = 2 }), "tasks[0].backpressure", "0 to 1"},
		{"task watermark", taskAt(0, func(t *Task) { t.WatermarkMs = -1 }), "tasks[0].watermark_ms", "negative"},
		{"checkpointed negative", taskAt(0, func(t *Task) { t.Checkpointed = -1 }), "tasks[0].checkpointed", "negative"},
		{"checkpoint bytes negative", taskAt(0, func(t *Task) { t.CheckpointBytes = -1 }), "tasks[0].checkpoint_bytes", "negative"},
		{"checkpoint bytes without epoch", taskAt(3, func(t *Task) { t.CheckpointBytes = 1 }), "tasks[3].checkpoint_bytes", "set checkpointed"},
		{"checkpoint metadata without epoch", taskAt(3, func(t *Task) { t.CheckpointMetadata = "m" }), "tasks[3].checkpoint_metadata", "set checkpointed"},
		{"checkpoint metadata too long", taskAt(0, func(t *Task) { t.CheckpointMetadata = strings.Repeat("m", MaxMetadataBytes+1) }), "tasks[0].checkpoint_metadata", "more than 1024"},
		{"committed negative", taskAt(2, func(t *Task) { t.Committed = -3 }), "tasks[2].committed", "negative"},
		{"error while running", taskAt(0, func(t *Task) { t.Error = "x" }), "tasks[0].error", "only set while the subtask has failed"},
		{"retry while finished", taskAt(2, func(t *Task) { t.Retry = RetryNone }), "tasks[2].retry", "only set while"},
		{"failure without error", taskAt(1, func(t *Task) { t.Error = "" }), "tasks[1].error", "missing"},
		{"failure without domain", taskAt(1, func(t *Task) { t.Domain = "" }), "tasks[1].domain", "missing"},
		{"failure unknown retry", taskAt(1, func(t *Task) { t.Retry = "later" }), "tasks[1].retry", `"later" is unknown`},
	}
}

func TestDecodeRejectsV2(t *testing.T) {
	for _, r := range rejectionsV2() {
		t.Run(r.name, func(t *testing.T) {
			env := fullEnvelopeV2()
			r.mutate(env)
			body, err := json.Marshal(env)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Decode(body)
			assertFieldError(t, err, r.field, r.problem)
			_, err = Encode(env)
			assertFieldError(t, err, r.field, r.problem)
		})
	}
}

// TestV2FieldsInV1AreMalformed: a v1 envelope that uses what only v2 has
// is refused with the path of the field, not half-applied.
func TestV2FieldsInV1AreMalformed(t *testing.T) {
	valid := string(mustEncode(t, fullEnvelope()))
	cases := []struct{ name, body, field, problem string }{
		{"slots", strings.Replace(valid, `"seq":42`, `"seq":42,"slots":4`, 1), "slots", "field of protocol v2, not v1"},
		{"tasks", strings.Replace(valid, `"seq":42`, `"seq":42,"tasks":[{"op":"source","subtask":0,"state":"running"}]`, 1), "tasks", "field of protocol v2, not v1"},
		{"task field in a metric", strings.Replace(valid, `"backpressure":1`, `"backpressure":1,"state":"running"`, 1), "heartbeat.metrics[1].state", "not a field of protocol v1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode([]byte(c.body))
			assertFieldError(t, err, c.field, c.problem)
		})
	}
	v2 := string(mustEncode(t, fullEnvelopeV2()))
	_, err := Decode([]byte(strings.Replace(v2, `"state":"running"`, `"state":"running","lag":3`, 1)))
	assertFieldError(t, err, "tasks[0].lag", "not a field of protocol v2")
}

func TestDecodeRejects(t *testing.T) {
	for _, r := range rejections() {
		t.Run(r.name, func(t *testing.T) {
			env := fullEnvelope()
			r.mutate(env)
			body, err := json.Marshal(env) // bypasses Encode's checks
			if err != nil {
				t.Fatal(err)
			}
			_, err = Decode(body)
			assertFieldError(t, err, r.field, r.problem)

			// Encode refuses the same envelope for the same reason.
			_, err = Encode(env)
			assertFieldError(t, err, r.field, r.problem)
		})
	}
}

func assertFieldError(t *testing.T, err error, field, problem string) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error = %v (%T), want a *FieldError for %s", err, err, field)
	}
	if fe.Field != field {
		t.Errorf("error names field %q, want %q (error: %v)", fe.Field, field, err)
	}
	if !strings.Contains(fe.Problem, problem) {
		t.Errorf("error %q does not say %q", err, problem)
	}
	if field != "" && !strings.HasPrefix(err.Error(), field+": ") {
		t.Errorf("error %q does not start with the field path", err)
	}
	if errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("error %q claims an unsupported version", err)
	}
}

func TestDecodeRejectsRawBodies(t *testing.T) {
	valid := string(mustEncode(t, fullEnvelope()))
	cases := []struct {
		name, body, field, problem string
	}{
		{"empty", ``, "", "empty"},
		{"not json", `hello`, "", "not valid JSON at byte 1"},
		{"truncated", valid[:len(valid)-10], "", "cut short"},
		{"trailing data", valid + `{}`, "", "followed by more data"},
		{"trailing garbage", valid + `]`, "", "followed by more data"},
		{"array", `[1,2]`, "", "must be a JSON object, not array"},
		{"null", `null`, "v", "missing"},
		{"unknown top-level field", strings.Replace(valid, `"seq":`, `"priority":1,"seq":`, 1), "priority", "not a field of protocol v1"},
		{"unknown event field", strings.Replace(valid, `"kind":"task_started"`, `"kind":"task_started","slot":2`, 1), "events[1].slot", "not a field"},
		{"unknown metric field", strings.Replace(valid, `"backpressure":1`, `"backpressure":1,"lag":3`, 1), "heartbeat.metrics[1].lag", "not a field"},
		{"unknown heartbeat field", strings.Replace(valid, `"heartbeat":{`, `"heartbeat":{"cpu":0.5,`, 1), "heartbeat.cpu", "not a field"},
		{"epoch as string", strings.Replace(valid, `"epoch":7,"phase"`, `"epoch":"7","phase"`, 1), "events[2].epoch", "must be a whole number, not string"},
		{"fractional subtask", strings.Replace(valid, `"op":"sink","subtask":1,"epoch":7`, `"op":"sink","subtask":1.5,"epoch":7`, 1), "events[4].subtask", "whole number, not number 1.5"},
		{"negative seq", strings.Replace(valid, `"seq":42`, `"seq":-42`, 1), "seq", "not negative"},
		{"events as object", strings.Replace(valid, `"events":[`, `"events":{"a":[`, 1) + "}", "events", "must be a list, not object"},
		{"sent_at not a time", strings.Replace(valid, `"sent_at":"2026-03-01T12:00:00.25Z"`, `"sent_at":"yesterday"`, 1), "sent_at", `"yesterday" is not a time`},
		{"backpressure overflow", strings.Replace(valid, `"backpressure":0.25`, `"backpressure":1e999`, 1), "heartbeat.metrics[0].backpressure", "must be a number, not number 1e999"},
		{"oversized", `{"v":1,"job":"` + strings.Repeat("j", MaxEnvelopeBytes) + `"}`, "", "more than the 65536 allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode([]byte(c.body))
			assertFieldError(t, err, c.field, c.problem)
		})
	}
}

func TestDecodeUnsupportedVersion(t *testing.T) {
	for _, body := range []string{
		strings.Replace(string(mustEncode(t, fullEnvelope())), `"v":1`, `"v":3`, 1),
		// A v3 envelope with fields this side does not know is still
		// reported as a version mismatch, not as an unknown field.
		`{"v":3,"job":"j","run":1,"worker":"w","seq":1,"priority":"high"}`,
		`{"v":-1}`,
	} {
		_, err := Decode([]byte(body))
		if !errors.Is(err, ErrUnsupportedVersion) {
			t.Fatalf("Decode(%s) = %v, want ErrUnsupportedVersion", body, err)
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "v" || !strings.Contains(err.Error(), "speaks versions 1 and 2") {
			t.Fatalf("error %q does not name v and the version spoken", err)
		}
	}
}

func TestEncodeRejectsWhatJSONCannotCarry(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		env := fullEnvelope()
		env.Heartbeat.Metrics[0].Backpressure = v
		_, err := Encode(env)
		assertFieldError(t, err, "heartbeat.metrics[0].backpressure", "0 to 1")
	}
	env := fullEnvelope()
	env.SentAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err := Encode(env)
	assertFieldError(t, err, "sent_at", "out of range")

	_, err = Encode(nil)
	assertFieldError(t, err, "", "missing")
}

func TestEncodeRejectsOversizedEnvelope(t *testing.T) {
	env := fullEnvelope()
	env.Events = nil
	for i := range 20 {
		env.Events = append(env.Events, Event{Kind: TaskFailed, Operator: "o", Subtask: i,
			Error: strings.Repeat("e", MaxErrorBytes), Domain: "user", Retry: RetryNone})
	}
	_, err := Encode(env)
	assertFieldError(t, err, "", "more than the 65536 allowed")
}

func TestEventValidate(t *testing.T) {
	if err := (Event{Kind: CommitFinished, Operator: "sink", Epoch: 2}).Validate(); err != nil {
		t.Fatal(err)
	}
	err := Event{Kind: CommitFinished, Operator: "sink"}.Validate()
	assertFieldError(t, err, "event.epoch", "must be at least 1")
}

func TestUrgentKinds(t *testing.T) {
	for _, k := range Kinds {
		want := k != CheckpointEvent && k != NonFatalError
		if k.Urgent() != want {
			t.Errorf("%s.Urgent() = %v, want %v", k, k.Urgent(), want)
		}
	}
}

func TestEnvelopeString(t *testing.T) {
	got := fullEnvelope().String()
	for _, want := range []string{"v1 job=orders-enrich run=3 worker=w-1 seq=42", "heartbeat(2 metrics)", "checkpoint_completed(source/0@7)"} {
		if !strings.Contains(got, want) {
			t.Errorf("String() = %q, lacks %q", got, want)
		}
	}
	got = fullEnvelopeV2().String()
	for _, want := range []string{"v2 job=orders-enrich", "slots=4", "source/0:running@7", "sink/1:failed@7+7", "checkpoint_event(source/0@8)"} {
		if !strings.Contains(got, want) {
			t.Errorf("String() = %q, lacks %q", got, want)
		}
	}
}

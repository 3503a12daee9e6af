package protocol

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode"

	"github.com/weirstream/weir/core/job"
)

// ErrUnsupportedVersion marks an envelope of a protocol version this side
// does not speak. The controller dead-letters such messages like malformed
// ones, but its log line should say that a worker and the controller
// disagree on the version rather than that a worker sent garbage.
var ErrUnsupportedVersion = errors.New("unsupported protocol version")

// FieldError says which part of an envelope is wrong and why. Field is a
// path such as "events[3].epoch", empty when the envelope as a whole is at
// fault (bad JSON, too large).
type FieldError struct {
	Field   string
	Problem string
	err     error
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

// Unwrap exposes ErrUnsupportedVersion for a version mismatch.
func (e *FieldError) Unwrap() error { return e.err }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Validate checks everything Decode checks after parsing: the version, the
// identity of the sender, the fields of the envelope's version, and each
// task, metric and event against its rules. It returns a *FieldError naming
// the first field at fault.
func (e *Envelope) Validate() error {
	if e == nil {
		return fieldErr("", "envelope is missing")
	}
	switch {
	case e.V == 0:
		return fieldErr("v", "missing: set it to the protocol version, %d", Version)
	case e.V != V1 && e.V != V2:
		return &FieldError{
			Field:   "v",
			Problem: fmt.Sprintf("version %d is not supported: this side speaks versions %d and %d, so upgrade the controller or run workers that speak %d", e.V, V1, V2, Version),
			err:     ErrUnsupportedVersion,
		}
	}
	if e.JobID == "" {
		return fieldErr("job", "missing: name the job from the worker's start-up settings")
	}
	if err := e.JobID.Validate(); err != nil {
		return fieldErr("job", "%v", err)
	}
	if e.RunID < 1 {
		return fieldErr("run", "must be at least 1 (got %d): send the run id the worker was started for", e.RunID)
	}
	if err := checkName("worker", e.WorkerID, true); err != nil {
		return err
	}
	if e.Seq == 0 {
		return fieldErr("seq", "must be at least 1: number envelopes 1, 2, 3, … within a run")
	}
	if e.SentAt.IsZero() {
		return fieldErr("sent_at", "missing: set it to the time of sending (RFC 3339)")
	}
	if y := e.SentAt.UTC().Year(); y < 0 || y > 9999 {
		return fieldErr("sent_at", "year %d is out of range", y)
	}
	var err error
	if e.V == V1 {
		err = e.validateV1()
	} else {
		err = e.validateV2()
	}
	if err != nil {
		return err
	}
	if n := len(e.Events); n > MaxEvents {
		return fieldErr("events", "%d events are more than the %d one envelope may carry: send the rest in the next envelope", n, MaxEvents)
	}
	for i := range e.Events {
		if err := e.Events[i].validate(); err != nil {
			return within(fmt.Sprintf("events[%d]", i), err)
		}
		if k := e.Events[i].Kind; e.V == V2 && !k.InV2() {
			return fieldErr(fmt.Sprintf("events[%d].kind", i), "%s is an event of protocol v1 only: in v2 %s", k, v2Instead(k))
		}
	}
	return nil
}

func (e *Envelope) validateV1() error {
	if e.Slots != 0 {
		return fieldErr("slots", "is a field of protocol v2, not v1: set v to 2, or register with a worker_registered event")
	}
	if e.Tasks != nil {
		return fieldErr("tasks", "is a field of protocol v2, not v1: set v to 2, or report metrics in heartbeat.metrics")
	}
	if e.Heartbeat == nil && len(e.Events) == 0 {
		return fieldErr("heartbeat", "missing: an envelope without events must carry a heartbeat")
	}
	if e.Heartbeat != nil {
		if err := e.Heartbeat.validate(); err != nil {
			return within("heartbeat", err)
		}
	}
	return nil
}

func (e *Envelope) validateV2() error {
	if e.Heartbeat != nil {
		return fieldErr("heartbeat", "is a field of protocol v1, not v2: every v2 envelope is a heartbeat; put each subtask's metrics in its tasks entry")
	}
	if e.Slots < 1 || e.Slots > MaxSlots {
		return fieldErr("slots", "must be from 1 to %d (got %d): say how many task slots the worker offers, in every envelope", MaxSlots, e.Slots)
	}
	if n := len(e.Tasks); n > MaxTasks {
		return fieldErr("tasks", "%d entries are more than the %d one envelope may carry: report the rest in the next envelope", n, MaxTasks)
	}
	for i := range e.Tasks {
		if err := e.Tasks[i].validate(); err != nil {
			return within(fmt.Sprintf("tasks[%d]", i), err)
		}
	}
	if i, j, dup := repeated(e.Tasks, func(t *Task) subtaskKey { return subtaskKey{t.Operator, t.Subtask} }); dup {
		t := &e.Tasks[j]
		return fieldErr(fmt.Sprintf("tasks[%d]", j), "repeats op %q subtask %d of tasks[%d]: report each subtask once", t.Operator, t.Subtask, i)
	}
	return nil
}

// v2Instead says where v1 news of kind k goes in a v2 envelope.
func v2Instead(k Kind) string {
	switch k {
	case WorkerRegistered:
		return "every envelope registers the worker with its slots"
	case TaskStarted, TaskFinished, TaskFailed:
		return "report it as the subtask's tasks[].state (a failure with error, domain and retry)"
	case CheckpointCompleted:
		return "report it as the subtask's tasks[].checkpointed, checkpoint_bytes and checkpoint_metadata"
	case CommitFinished:
		return "report it as the subtask's tasks[].committed"
	}
	return "use checkpoint_event or error"
}

// Validate checks one subtask's state as Encode and Decode do for each
// entry of a v2 envelope.
func (t Task) Validate() error { return within("task", t.validate()) }

func (t *Task) validate() error {
	if err := checkName("op", t.Operator, true); err != nil {
		return err
	}
	if err := checkSubtask(t.Subtask); err != nil {
		return err
	}
	if !validTaskState(t.State) {
		return fieldErr("state", "%s: use one of %s", describe(string(t.State)), stateList())
	}
	if math.IsNaN(t.Backpressure) || t.Backpressure < 0 || t.Backpressure > 1 {
		return fieldErr("backpressure", "must be a number from 0 to 1 (got %g)", t.Backpressure)
	}
	if t.WatermarkMs < 0 {
		return fieldErr("watermark_ms", "must not be negative (got %d): leave it out until the subtask has a watermark", t.WatermarkMs)
	}
	if t.Checkpointed < 0 {
		return fieldErr("checkpointed", "must not be negative (got %d): leave it out until the subtask has completed a checkpoint", t.Checkpointed)
	}
	if t.Checkpointed == 0 && (t.CheckpointBytes != 0 || t.CheckpointMetadata != "") {
		field := "checkpoint_bytes"
		if t.CheckpointBytes == 0 {
			field = "checkpoint_metadata"
		}
		return fieldErr(field, "belongs to a completed checkpoint: set checkpointed to its epoch, or leave it out")
	}
	if t.CheckpointBytes < 0 {
		return fieldErr("checkpoint_bytes", "must not be negative (got %d)", t.CheckpointBytes)
	}
	if n := len(t.CheckpointMetadata); n > MaxMetadataBytes {
		return fieldErr("checkpoint_metadata", "is %d bytes, more than %d: store the state elsewhere and send where it is", n, MaxMetadataBytes)
	}
	if t.Committed < 0 {
		return fieldErr("committed", "must not be negative (got %d): leave it out until the subtask has committed an epoch", t.Committed)
	}
	if t.State != Failed {
		return t.noFailure()
	}
	if err := checkError(t.Error); err != nil {
		return err
	}
	if !validDomain(t.Domain) {
		return fieldErr("domain", "%s: use user, internal or external", describe(string(t.Domain)))
	}
	if t.Retry != RetryNone && t.Retry != RetryBackoff {
		return fieldErr("retry", "%s: use none (retrying cannot help) or backoff (restart after a back-off)", describe(string(t.Retry)))
	}
	return nil
}

// noFailure refuses the fields of a failure on a subtask that has not
// failed.
func (t *Task) noFailure() error {
	field := ""
	switch {
	case t.Error != "":
		field = "error"
	case t.Domain != "":
		field = "domain"
	case t.Retry != "":
		field = "retry"
	default:
		return nil
	}
	return fieldErr(field, "is only set while the subtask has failed (state %s): leave it out", t.State)
}

// within puts a part's error under the part's path: the checks of metrics
// and events name fields relative to themselves, so that no path is built
// unless something is wrong.
func within(path string, err error) error {
	fe, ok := err.(*FieldError)
	if !ok {
		return err
	}
	if fe.Field == "" {
		fe.Field = path
	} else {
		fe.Field = path + "." + fe.Field
	}
	return fe
}

type subtaskKey struct {
	op      string
	subtask int
}

func (h *Heartbeat) validate() error {
	if n := len(h.Metrics); n > MaxMetrics {
		return fieldErr("metrics", "%d entries are more than the %d one heartbeat may carry", n, MaxMetrics)
	}
	for i := range h.Metrics {
		if err := h.Metrics[i].validate(); err != nil {
			return within(fmt.Sprintf("metrics[%d]", i), err)
		}
	}
	if i, j, dup := repeated(h.Metrics, func(m *TaskMetrics) subtaskKey { return subtaskKey{m.Operator, m.Subtask} }); dup {
		m := &h.Metrics[j]
		return fieldErr(fmt.Sprintf("metrics[%d]", j), "repeats op %q subtask %d of metrics[%d]: report each subtask once", m.Operator, m.Subtask, i)
	}
	return nil
}

// repeated finds the first entry j that reports the same subtask as an
// earlier entry i. Envelopes are usually small, and comparing pairs then
// costs less than a map.
func repeated[T any](xs []T, key func(*T) subtaskKey) (i, j int, dup bool) {
	if len(xs) <= 32 {
		var keys [32]subtaskKey
		for j := range xs {
			keys[j] = key(&xs[j])
			for i := range j {
				// The subtask first: mostly it differs, and the operator's
				// name costs a comparison of memory.
				if keys[i].subtask == keys[j].subtask && keys[i].op == keys[j].op {
					return i, j, true
				}
			}
		}
		return 0, 0, false
	}
	seen := make(map[subtaskKey]int, len(xs))
	for j := range xs {
		k := key(&xs[j])
		if i, ok := seen[k]; ok {
			return i, j, true
		}
		seen[k] = j
	}
	return 0, 0, false
}

func (m *TaskMetrics) validate() error {
	if err := checkName("op", m.Operator, true); err != nil {
		return err
	}
	if err := checkSubtask(m.Subtask); err != nil {
		return err
	}
	if math.IsNaN(m.Backpressure) || m.Backpressure < 0 || m.Backpressure > 1 {
		return fieldErr("backpressure", "must be a number from 0 to 1 (got %g)", m.Backpressure)
	}
	if m.WatermarkMs < 0 {
		return fieldErr("watermark_ms", "must not be negative (got %d): leave it out until the subtask has a watermark", m.WatermarkMs)
	}
	return nil
}

// Validate checks one event against the rules of its kind, as Encode and
// Decode do for each event of an envelope.
func (ev Event) Validate() error { return within("event", ev.validate()) }

// eventField is one optional field of Event, for the table of which kind
// uses which.
type eventField uint16

const (
	fOp eventField = 1 << iota
	fEpoch
	fSlots
	fError
	fDomain
	fRetry
	fPhase
	fBytes
	fMetadata
)

var eventFieldNames = []struct {
	f    eventField
	name string
}{
	{fOp, "op"}, {fEpoch, "epoch"}, {fSlots, "slots"}, {fError, "error"}, {fDomain, "domain"},
	{fRetry, "retry"}, {fPhase, "phase"}, {fBytes, "bytes"}, {fMetadata, "metadata"},
}

// eventFields says which optional fields each kind may set. Anything else
// set on an event is a worker bug worth hearing about, not something to
// ignore silently.
var eventFields = map[Kind]eventField{
	WorkerRegistered:    fSlots,
	TaskStarted:         fOp,
	TaskFinished:        fOp,
	TaskFailed:          fOp | fError | fDomain | fRetry,
	CheckpointEvent:     fOp | fEpoch | fPhase,
	CheckpointCompleted: fOp | fEpoch | fBytes | fMetadata,
	CommitFinished:      fOp | fEpoch,
	NonFatalError:       fOp | fError | fDomain,
}

func (ev *Event) setFields() eventField {
	var s eventField
	set := func(f eventField, ok bool) {
		if ok {
			s |= f
		}
	}
	set(fOp, ev.Operator != "")
	set(fEpoch, ev.Epoch != 0)
	set(fSlots, ev.Slots != 0)
	set(fError, ev.Error != "")
	set(fDomain, ev.Domain != "")
	set(fRetry, ev.Retry != "")
	set(fPhase, ev.Phase != "")
	set(fBytes, ev.Bytes != 0)
	set(fMetadata, ev.Metadata != "")
	return s
}

func (ev *Event) validate() error {
	if ev.Kind == "" {
		return fieldErr("kind", "missing: name the event kind (%s)", kindList())
	}
	allowed, known := eventFields[ev.Kind]
	if !known {
		return fieldErr("kind", "%q is not an event kind: use one of %s", ev.Kind, kindList())
	}
	if extra := ev.setFields() &^ allowed; extra != 0 {
		for _, fn := range eventFieldNames {
			if extra&fn.f != 0 {
				return fieldErr(fn.name, "not used by %s events: leave it out", ev.Kind)
			}
		}
	}
	if err := checkSubtask(ev.Subtask); err != nil {
		return err
	}
	if ev.Operator != "" {
		if err := checkName("op", ev.Operator, false); err != nil {
			return err
		}
	}

	switch ev.Kind {
	case WorkerRegistered:
		if ev.Subtask != 0 {
			return fieldErr("subtask", "must be 0 in worker_registered events (got %d)", ev.Subtask)
		}
		if ev.Slots < 1 || ev.Slots > MaxSlots {
			return fieldErr("slots", "must be from 1 to %d (got %d): say how many task slots the worker offers", MaxSlots, ev.Slots)
		}
	case TaskStarted, TaskFinished:
		return requireOp(ev)
	case TaskFailed:
		if err := requireOp(ev); err != nil {
			return err
		}
		if err := checkError(ev.Error); err != nil {
			return err
		}
		if !validDomain(ev.Domain) {
			return fieldErr("domain", "%s: use user, internal or external", describe(string(ev.Domain)))
		}
		if ev.Retry != RetryNone && ev.Retry != RetryBackoff {
			return fieldErr("retry", "%s: use none (retrying cannot help) or backoff (restart after a back-off)", describe(string(ev.Retry)))
		}
	case CheckpointEvent:
		if err := requireOpAndEpoch(ev); err != nil {
			return err
		}
		if !validPhase(ev.Phase) {
			return fieldErr("phase", "%s: use one of %s", describe(string(ev.Phase)), phaseList())
		}
	case CheckpointCompleted:
		if err := requireOpAndEpoch(ev); err != nil {
			return err
		}
		if ev.Bytes < 0 {
			return fieldErr("bytes", "must not be negative (got %d)", ev.Bytes)
		}
		if n := len(ev.Metadata); n > MaxMetadataBytes {
			return fieldErr("metadata", "is %d bytes, more than %d: store the state elsewhere and send where it is", n, MaxMetadataBytes)
		}
	case CommitFinished:
		return requireOpAndEpoch(ev)
	case NonFatalError:
		if ev.Operator == "" && ev.Subtask != 0 {
			return fieldErr("op", "missing: an error of subtask %d must name its operator", ev.Subtask)
		}
		if err := checkError(ev.Error); err != nil {
			return err
		}
		if ev.Domain != "" && !validDomain(ev.Domain) {
			return fieldErr("domain", "%s: use user, internal or external, or leave it out", describe(string(ev.Domain)))
		}
	}
	return nil
}

func requireOp(ev *Event) error {
	if ev.Operator == "" {
		return fieldErr("op", "missing: %s events name the operator of the subtask", ev.Kind)
	}
	return nil
}

func requireOpAndEpoch(ev *Event) error {
	if err := requireOp(ev); err != nil {
		return err
	}
	if ev.Epoch < 1 {
		return fieldErr("epoch", "must be at least 1 (got %d)", ev.Epoch)
	}
	return nil
}

func checkError(msg string) error {
	if msg == "" {
		return fieldErr("error", "missing: say what went wrong")
	}
	if len(msg) > MaxErrorBytes {
		return fieldErr("error", "is %d bytes, more than %d: send the first lines only", len(msg), MaxErrorBytes)
	}
	return nil
}

func checkSubtask(subtask int) error {
	if subtask < 0 || subtask >= job.MaxParallelism {
		return fieldErr("subtask", "must be from 0 to %d (got %d)", job.MaxParallelism-1, subtask)
	}
	return nil
}

// checkName checks an identifier that ends up in logs and records.
func checkName(path, s string, required bool) error {
	switch {
	case s == "" && required:
		return fieldErr(path, "missing")
	case len(s) > MaxNameBytes:
		return fieldErr(path, "is %d bytes, more than %d", len(s), MaxNameBytes)
	case !printableASCII(s) && strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fieldErr(path, "%q contains control characters", s)
	}
	return nil
}

// printableASCII reports whether s is all printable ASCII, as names
// mostly are: no control character can be in it.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func validDomain(d job.ErrorDomain) bool {
	return d == job.DomainUser || d == job.DomainInternal || d == job.DomainExternal
}

func validTaskState(s TaskState) bool {
	for _, k := range TaskStates {
		if s == k {
			return true
		}
	}
	return false
}

func stateList() string {
	names := make([]string, len(TaskStates))
	for i, s := range TaskStates {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func validPhase(p Phase) bool {
	for _, k := range Phases {
		if p == k {
			return true
		}
	}
	return false
}

// describe names a value in an error: "missing" or the quoted value.
func describe(v string) string {
	if v == "" {
		return "missing"
	}
	return fmt.Sprintf("%q is unknown", v)
}

func kindList() string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

func phaseList() string {
	names := make([]string, len(Phases))
	for i, p := range Phases {
		names[i] = string(p)
	}
	return strings.Join(names, ", ")
}

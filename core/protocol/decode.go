package protocol

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/weirstream/weir/core/job"
)

// The envelope is decoded by one pass over the body that checks its syntax
// and fills the structs by hand, six to nine times faster than
// encoding/json's reflection (BenchmarkDecoders); it allocates only the
// body's copy, the envelope and its lists. It descends only into the shapes an envelope has and refuses
// anything else on the spot, so it never has to skip over (or bound the
// depth of) values it does not know.
//
// Decode accepts exactly what encoding/json with DisallowUnknownFields
// accepted (RFC 8259 syntax with invalid UTF-8 let through; keys matched
// exactly, else ignoring case; null leaves a field as it is; numbers parsed
// by strconv as encoding/json does; strings with escapes or invalid UTF-8
// unquoted by encoding/json itself), except that a field named twice in one
// object is refused: encoding/json kept the last one and merged repeated
// objects, which no worker that means one value needs. The differential
// fuzz test (FuzzDecodeMatchesReference) holds the two decoders to this.
//
// When the walk refuses a body, explain runs encoding/json on it to say
// why, so the error paths and messages are those of the old decoder.

// errRejected marks a body the walk refused; explain says why.
var errRejected = errors.New("envelope rejected")

// walker is where one decode is in the body.
type walker struct {
	s   string // the body, copied once: string fields are substrings of it
	pos int    // the walk's position in s
}

// decodeJSON parses data into an envelope without validating it.
func decodeJSON(data []byte) (*Envelope, error) {
	w := &walker{s: string(data)}
	env := new(Envelope)
	if err := w.envelope(env); err != nil {
		return nil, err
	}
	if w.ws(); w.pos != len(w.s) {
		return nil, errRejected // trailing data
	}
	return env, nil
}

// dupErr reports a field named twice in one object.
func dupErr(name string) error {
	return fieldErr(name, "appears more than once in its object: send each field once")
}

// prefix puts a parent's path in front of a field error from below.
func prefix(path string, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		field := path + "." + fe.Field
		switch {
		case fe.Field == "":
			field = path
		case fe.Field[0] == '[':
			field = path + fe.Field
		}
		return &FieldError{Field: field, Problem: fe.Problem, err: fe.err}
	}
	return err
}

// ws skips white space.
func (w *walker) ws() {
	if w.pos < len(w.s) && w.s[w.pos] > ' ' {
		return // mostly there is none: Encode writes none
	}
	w.skipWS()
}

func (w *walker) skipWS() {
	for w.pos < len(w.s) {
		switch w.s[w.pos] {
		case ' ', '\t', '\n', '\r':
			w.pos++
		default:
			return
		}
	}
}

// peek returns the kind of the next value: '{', '[', '"', '0' (a number),
// 't' (true or false), 'n' (null), or 0 at the end of the body.
func (w *walker) peek() byte {
	w.ws()
	if w.pos == len(w.s) {
		return 0
	}
	switch c := w.s[w.pos]; c {
	case 'f':
		return 't'
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return '0'
	default:
		return c
	}
}

// next consumes the byte c, after white space, or reports false.
func (w *walker) next(c byte) bool {
	w.ws()
	if w.pos < len(w.s) && w.s[w.pos] == c {
		w.pos++
		return true
	}
	return false
}

// raw consumes the next value, which must be a string, number, true,
// false or null, checks its syntax and returns its text and kind; plain
// says that a string holds no escapes. kind is 0 for bad syntax.
func (w *walker) raw() (text string, kind byte, plain bool) {
	k := w.peek()
	start := w.pos
	switch k {
	case '"':
		plain = true
		for w.pos++; ; w.pos++ {
			if w.pos >= len(w.s) {
				return "", 0, false
			}
			switch c := w.s[w.pos]; {
			case c == '"':
				w.pos++
				return w.s[start:w.pos], k, plain
			case c == '\\':
				// The escape itself is checked where it is unquoted.
				plain = false
				w.pos++
			case c < 0x20:
				return "", 0, false
			}
		}
	case '0':
		if !w.numberSyntax() {
			return "", 0, false
		}
	case 'n', 't':
		for _, lit := range [...]string{"null", "true", "false"} {
			if strings.HasPrefix(w.s[w.pos:], lit) {
				w.pos += len(lit)
				return lit, k, false
			}
		}
		return "", 0, false
	default:
		return "", k, false // an object or a list, or the end
	}
	return w.s[start:w.pos], k, false
}

// numberSyntax consumes a number of RFC 8259's grammar,
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, or reports false.
func (w *walker) numberSyntax() bool {
	if w.pos < len(w.s) && w.s[w.pos] == '-' {
		w.pos++
	}
	switch {
	case w.pos < len(w.s) && w.s[w.pos] == '0':
		w.pos++
	case !w.digitRun():
		return false
	}
	if w.pos < len(w.s) && w.s[w.pos] == '.' {
		w.pos++
		if !w.digitRun() {
			return false
		}
	}
	if w.pos < len(w.s) && (w.s[w.pos] == 'e' || w.s[w.pos] == 'E') {
		w.pos++
		if w.pos < len(w.s) && (w.s[w.pos] == '+' || w.s[w.pos] == '-') {
			w.pos++
		}
		if !w.digitRun() {
			return false
		}
	}
	return true
}

// digitRun consumes one or more digits, or reports false.
func (w *walker) digitRun() bool {
	start := w.pos
	for w.pos < len(w.s) && w.s[w.pos]-'0' <= 9 {
		w.pos++
	}
	return w.pos > start
}

// null consumes a null if one is next.
func (w *walker) null() bool {
	if w.peek() == 'n' && strings.HasPrefix(w.s[w.pos:], "null") {
		w.pos += len("null")
		return true
	}
	return false
}

// object reads the members of an object, calling member with the index of
// the field each key names in names (matched as encoding/json does:
// exactly, else ignoring case). A null leaves the fields as they are, an
// unknown key or anything other than an object is refused, and so is a
// field named twice.
func (w *walker) object(names []string, member func(field int) error) error {
	if w.null() {
		return nil
	}
	if !w.next('{') {
		return errRejected
	}
	if w.next('}') {
		return nil
	}
	var seen uint32
	f := -1
	for {
		f = w.key(names, f+1)
		if f < 0 {
			return errRejected
		}
		if seen&(1<<f) != 0 {
			return dupErr(names[f])
		}
		seen |= 1 << f
		if !w.next(':') {
			return errRejected
		}
		if err := member(f); err != nil {
			return prefix(names[f], err)
		}
		if w.next('}') {
			return nil
		}
		if !w.next(',') {
			return errRejected
		}
	}
}

// list reads a list, calling elem once per element; null leaves it as it
// is.
func (w *walker) list(elem func(i int) error) error {
	if w.null() {
		return nil
	}
	if !w.next('[') {
		return errRejected
	}
	if w.next(']') {
		return nil
	}
	for i := 0; ; i++ {
		if err := elem(i); err != nil {
			return prefix("["+strconv.Itoa(i)+"]", err)
		}
		if w.next(']') {
			return nil
		}
		if !w.next(',') {
			return errRejected
		}
	}
}

// key reads an object's key and returns the index of the field it names
// in names, -1 if none. Workers send the fields in the order of the
// structs, so it first tries whether the key is the one after the last.
func (w *walker) key(names []string, next int) int {
	w.ws()
	if next < len(names) {
		n := names[next]
		if end := w.pos + 1 + len(n); end < len(w.s) && w.s[w.pos] == '"' && w.s[end] == '"' && w.s[w.pos+1:end] == n {
			w.pos = end + 1
			return next
		}
	}
	key, err := w.str()
	if err != nil {
		return -1
	}
	return match(names, key, next)
}

// match finds the field key names, looking first at from: workers send
// the fields in the order of the structs, so the next key is mostly the
// next field.
func match(names []string, key string, from int) int {
	if from < len(names) && names[from] == key {
		return from
	}
	for i, n := range names {
		if n == key {
			return i
		}
	}
	for i, n := range names {
		if strings.EqualFold(n, key) {
			return i
		}
	}
	return -1
}

// str reads a JSON string (or an object's key). One without escapes or
// invalid UTF-8 is a substring of the body; the rare others are unquoted
// by encoding/json, so they read as they always have.
func (w *walker) str() (string, error) {
	s, k, plain := w.raw()
	if k != '"' {
		return "", errRejected
	}
	body := s[1 : len(s)-1]
	if plain && utf8.ValidString(body) {
		return body, nil
	}
	var out string
	if json.Unmarshal([]byte(s), &out) != nil {
		return "", errRejected
	}
	return out, nil
}

// setStr stores a string field; null leaves it as it is.
func setStr[T ~string](w *walker, dst *T) error {
	if w.null() {
		return nil
	}
	s, err := w.str()
	*dst = T(s)
	return err
}

// number reads a number's text; ok is false for null.
func (w *walker) number() (s string, ok bool, err error) {
	s, k, _ := w.raw()
	switch k {
	case 'n':
		return "", false, nil
	case '0':
		return s, true, nil
	}
	return "", false, errRejected
}

// digits reads a number of at most 18 digits with no sign, fraction or
// exponent, the common case, without strconv; ok is false for anything
// else, which is left unread.
func (w *walker) digits() (n uint64, ok bool) {
	w.ws()
	i := w.pos
	for ; i < len(w.s) && i-w.pos < 19; i++ {
		d := w.s[i] - '0'
		if d > 9 {
			break
		}
		n = n*10 + uint64(d)
	}
	if i == w.pos || i-w.pos > 18 || (w.s[w.pos] == '0' && i-w.pos > 1) || (i < len(w.s) && numberByte[w.s[i]]) {
		return 0, false
	}
	w.pos = i
	return n, true
}

// numberByte marks the bytes that may go on a number.
var numberByte = [256]bool{'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true, '7': true,
	'8': true, '9': true, '+': true, '-': true, '.': true, 'e': true, 'E': true}

func setInt[T int | int64](w *walker, dst *T) error {
	if n, ok := w.digits(); ok {
		*dst = T(n)
		return nil
	}
	s, ok, err := w.number()
	if !ok {
		return err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return errRejected
	}
	*dst = T(n)
	return nil
}

func setUint(w *walker, dst *uint64) error {
	if n, ok := w.digits(); ok {
		*dst = n
		return nil
	}
	s, ok, err := w.number()
	if !ok {
		return err
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return errRejected
	}
	*dst = n
	return nil
}

func setFloat(w *walker, dst *float64) error {
	s, ok, err := w.number()
	if !ok {
		return err
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return errRejected
	}
	*dst = f
	return nil
}

// setTime reads sent_at by time.Time's own UnmarshalJSON, as encoding/json
// did (it takes the raw text, escapes and all).
func setTime(w *walker, dst *time.Time) error {
	text, k, _ := w.raw()
	if k == 0 || k == '{' || k == '[' {
		return errRejected
	}
	return orReject(dst.UnmarshalJSON([]byte(text)))
}

func orReject(err error) error {
	if err != nil {
		return errRejected
	}
	return nil
}

var envelopeNames = []string{"v", "job", "run", "worker", "seq", "sent_at", "slots", "tasks", "heartbeat", "events"}

func (w *walker) envelope(e *Envelope) error {
	return w.object(envelopeNames, func(f int) error {
		switch f {
		case 0:
			return setInt(w, &e.V)
		case 1:
			return setStr(w, &e.JobID)
		case 2:
			return setInt(w, &e.RunID)
		case 3:
			return setStr(w, &e.WorkerID)
		case 4:
			return setUint(w, &e.Seq)
		case 5:
			return setTime(w, &e.SentAt)
		case 6:
			return setInt(w, &e.Slots)
		case 7:
			return w.taskList(e)
		case 8:
			if w.null() {
				e.Heartbeat = nil
				return nil
			}
			e.Heartbeat = new(Heartbeat)
			return w.heartbeat(e.Heartbeat)
		default:
			return w.list(func(int) error {
				e.Events = append(e.Events, Event{})
				return w.event(&e.Events[len(e.Events)-1])
			})
		}
	})
}

// taskList decodes the tasks into a list made once: its capacity is the
// number of objects left in the body, one per task unless events follow.
func (w *walker) taskList(e *Envelope) error {
	if w.null() {
		return nil
	}
	e.Tasks = make([]Task, 0, min(strings.Count(w.s[w.pos:], "{"), MaxTasks+1))
	return w.list(func(int) error {
		e.Tasks = append(e.Tasks, Task{})
		return w.task(&e.Tasks[len(e.Tasks)-1])
	})
}

var taskNames = []string{"op", "subtask", "state", "records_in", "records_out", "bytes_in", "bytes_out", "backpressure",
	"watermark_ms", "checkpointed", "checkpoint_bytes", "checkpoint_metadata", "committed", "error", "domain", "retry"}

func (w *walker) task(t *Task) error {
	return w.object(taskNames, func(f int) error {
		switch f {
		case 0:
			return setStr(w, &t.Operator)
		case 1:
			return setInt(w, &t.Subtask)
		case 2:
			return w.taskState(&t.State)
		case 3:
			return setUint(w, &t.RecordsIn)
		case 4:
			return setUint(w, &t.RecordsOut)
		case 5:
			return setUint(w, &t.BytesIn)
		case 6:
			return setUint(w, &t.BytesOut)
		case 7:
			return setFloat(w, &t.Backpressure)
		case 8:
			return setInt(w, &t.WatermarkMs)
		case 9:
			return setInt(w, &t.Checkpointed)
		case 10:
			return setInt(w, &t.CheckpointBytes)
		case 11:
			return setStr(w, &t.CheckpointMetadata)
		case 12:
			return setInt(w, &t.Committed)
		case 13:
			return setStr(w, &t.Error)
		case 14:
			return setStr[job.ErrorDomain](w, &t.Domain)
		default:
			return setStr(w, &t.Retry)
		}
	})
}

// taskState stores a task's state, as the package's constant when it is
// one: a job keeps its workers' task states, and a constant pins no body.
func (w *walker) taskState(dst *TaskState) error {
	if err := setStr(w, dst); err != nil {
		return err
	}
	for _, s := range TaskStates {
		if *dst == s {
			*dst = s
		}
	}
	return nil
}

var heartbeatNames = []string{"metrics"}

func (w *walker) heartbeat(h *Heartbeat) error {
	return w.object(heartbeatNames, func(int) error {
		if w.null() {
			return nil
		}
		h.Metrics = make([]TaskMetrics, 0, min(strings.Count(w.s[w.pos:], "{"), MaxMetrics+1))
		return w.list(func(int) error {
			h.Metrics = append(h.Metrics, TaskMetrics{})
			return w.taskMetrics(&h.Metrics[len(h.Metrics)-1])
		})
	})
}

var metricsNames = []string{"op", "subtask", "records_in", "records_out", "bytes_in", "bytes_out", "backpressure", "watermark_ms"}

func (w *walker) taskMetrics(m *TaskMetrics) error {
	return w.object(metricsNames, func(f int) error {
		switch f {
		case 0:
			return setStr(w, &m.Operator)
		case 1:
			return setInt(w, &m.Subtask)
		case 2:
			return setUint(w, &m.RecordsIn)
		case 3:
			return setUint(w, &m.RecordsOut)
		case 4:
			return setUint(w, &m.BytesIn)
		case 5:
			return setUint(w, &m.BytesOut)
		case 6:
			return setFloat(w, &m.Backpressure)
		default:
			return setInt(w, &m.WatermarkMs)
		}
	})
}

var eventNames = []string{"kind", "op", "subtask", "epoch", "slots", "error", "domain", "retry", "phase", "bytes", "metadata"}

func (w *walker) event(ev *Event) error {
	return w.object(eventNames, func(f int) error {
		switch f {
		case 0:
			return setStr(w, &ev.Kind)
		case 1:
			return setStr(w, &ev.Operator)
		case 2:
			return setInt(w, &ev.Subtask)
		case 3:
			return setInt(w, &ev.Epoch)
		case 4:
			return setInt(w, &ev.Slots)
		case 5:
			return setStr(w, &ev.Error)
		case 6:
			return setStr(w, &ev.Domain)
		case 7:
			return setStr(w, &ev.Retry)
		case 8:
			return setStr(w, &ev.Phase)
		case 9:
			return setInt(w, &ev.Bytes)
		default:
			return setStr(w, &ev.Metadata)
		}
	})
}

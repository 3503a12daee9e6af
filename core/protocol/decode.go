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
// and fills the structs by hand, several times faster than encoding/json's
// reflection (BenchmarkDecoders). It allocates only the envelope and its
// lists: string fields are substrings of the body. It descends only into
// the shapes an envelope has and refuses anything else on the spot, so it
// never has to skip over (or bound the depth of) values it does not know.
//
// Decode accepts exactly what encoding/json with DisallowUnknownFields
// accepted (RFC 8259 syntax with invalid UTF-8 let through; keys matched
// exactly, else ignoring case; null leaves a field as it is; numbers read
// to the values strconv gives, as encoding/json does; strings with escapes
// or invalid UTF-8 unquoted by encoding/json itself), except that a field
// named twice in one object is refused: encoding/json kept the last one
// and merged repeated objects, which no worker that means one value needs.
// The differential fuzz test (FuzzDecodeMatchesReference) holds the two
// decoders to this.
//
// When the walk refuses a body, explain runs encoding/json on it to say
// why, so the error paths and messages are those of the old decoder.
//
// The walk is fastest on what the worker SDK sends (Encode: compact, the
// fields in the order of the structs): each key is first compared, with
// its colon, as two words against the field after the last; integers are
// read eight digits at a time; a fraction of at most 15 digits is one
// exact division; a plain string is taken in place. Anything else takes
// the general path, to the same result (decode_test.go holds each
// shortcut to the reference decoder at its edges).

// errRejected marks a body the walk refused; explain says why.
var errRejected = errors.New("envelope rejected")

// walker is where one decode is in the body.
type walker struct {
	s   string // the body: string fields are substrings of it
	pos int    // the walk's position in s
}

// decodeJSON parses body into an envelope without validating it.
func decodeJSON(body string) (*Envelope, error) {
	w := &walker{s: body}
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
func (w *walker) ws() { w.pos = skipWS(w.s, w.pos) }

// skipWS returns the index of the first byte from i on that is not white
// space.
func skipWS(s string, i int) int {
	if i < len(s) && s[i] > ' ' {
		return i // mostly there is none: Encode writes none
	}
	return skipWSRun(s, i)
}

func skipWSRun(s string, i int) int {
	for ; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
		default:
			return i
		}
	}
	return i
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

// raw consumes the next value, which must be a string, number, true,
// false or null, checks its syntax and returns its text and kind; plain
// says that a string is its own value: no escapes, valid UTF-8. kind is 0
// for bad syntax.
func (w *walker) raw() (text string, kind byte, plain bool) {
	k := w.peek()
	start := w.pos
	switch k {
	case '"':
		end, escaped, wide, ok := stringEnd(w.s, start+1)
		if !ok {
			return "", 0, false
		}
		w.pos = end
		plain = !escaped && (!wide || utf8.ValidString(w.s[start+1:end-1]))
		return w.s[start:end], k, plain
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

// stringEnd finds the end of the string whose contents start at s[i]: the
// index past its closing quote. escaped says it holds escapes, wide that it
// holds bytes beyond ASCII; ok is false for a control character or a
// missing closing quote. The escapes themselves are checked where the
// string is unquoted.
func stringEnd(s string, i int) (end int, escaped, wide, ok bool) {
	for ; i < len(s); i++ {
		switch strByte[s[i]] {
		case strPlain:
		case strQuote:
			return i + 1, escaped, wide, true
		case strEscape:
			escaped = true
			i++ // the escaped byte cannot end the string
		case strControl:
			return 0, false, false, false
		default:
			wide = true
		}
	}
	return 0, false, false, false
}

// strByte classes the bytes inside a JSON string.
var strByte = func() (t [256]byte) {
	for c := range t {
		switch {
		case c < 0x20:
			t[c] = strControl
		case c == '"':
			t[c] = strQuote
		case c == '\\':
			t[c] = strEscape
		case c >= 0x80:
			t[c] = strWide
		}
	}
	return t
}()

const (
	strPlain = iota
	strQuote
	strEscape
	strControl
	strWide
)

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
	w.ws()
	if w.pos+4 <= len(w.s) && w.s[w.pos:w.pos+4] == "null" {
		w.pos += 4
		return true
	}
	return false
}

// fields are the names of an object's fields in the order workers send
// them, and each as it is sent: quoted and followed by its colon.
type fields struct {
	names []string
	keys  []key
}

func newFields(names ...string) *fields {
	if len(names) > 32 {
		panic("protocol: object tracks at most 32 fields") // seen is a uint32
	}
	fs := &fields{names: names}
	for _, n := range names {
		fs.keys = append(fs.keys, newKey(strconv.Quote(n)+":"))
	}
	return fs
}

// key is a field's key as workers send it, with its first sixteen bytes as
// two words (and masks for a shorter key), so that most keys are matched
// by two comparisons of words (in object) rather than a call to compare
// memory.
type key struct {
	text           string
	lo, hi         uint64
	loMask, hiMask uint64
}

func newKey(text string) key {
	k := key{text: text}
	var b [16]byte
	n := copy(b[:], text)
	var ones [16]byte
	for i := range n {
		ones[i] = 0xff
	}
	k.lo, k.hi = word(string(b[:]), 0), word(string(b[:]), 8)
	k.loMask, k.hiMask = word(string(ones[:]), 0), word(string(ones[:]), 8)
	return k
}

// word is the eight bytes of s from i as one little-endian word (one load).
func word(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// object reads the members of an object, calling member with the index of
// the field each key names (matched as encoding/json does: exactly, else
// ignoring case). A null leaves the fields as they are, an unknown key or
// anything other than an object is refused, and so is a field named twice.
//
// The walk between members keeps its place in a local (a register) and
// hands it to member through w.pos: it is the hottest loop of a decode.
// list reads its separators the same way, written out in both: a shared
// helper is past the inliner's budget, and its call cost 4 % of a decode.
func (w *walker) object(fs *fields, member func(field int) error) error {
	if w.null() {
		return nil
	}
	s, i := w.s, w.pos // null skipped the white space
	if i == len(s) || s[i] != '{' {
		return errRejected
	}
	if i = skipWS(s, i+1); i < len(s) && s[i] == '}' {
		w.pos = i + 1
		return nil
	}
	var seen uint32
	keys := fs.keys
	f := -1
	for {
		// Workers send the fields in the order of the structs, with no
		// space: first try whether this key and its colon are those of the
		// field after the last. (Compared here, not in a method: a call
		// per field costs as much as the comparison.)
		next, hit := f+1, false
		if next < len(keys) {
			k := &keys[next]
			if len(k.text) <= 16 && i+16 <= len(s) {
				hit = word(s, i)&k.loMask == k.lo && word(s, i+8)&k.hiMask == k.hi
			} else {
				hit = strings.HasPrefix(s[i:], k.text)
			}
		}
		if hit {
			f = next
			i += len(keys[next].text)
		} else {
			w.pos = i
			key, err := w.str()
			if err != nil {
				return errRejected
			}
			if f = match(fs.names, key, f+1); f < 0 {
				return errRejected
			}
			if i = skipWS(s, w.pos); i == len(s) || s[i] != ':' {
				return errRejected
			}
			i++
		}
		bit := uint32(1) << (uint(f) & 31) // an object has at most 32 fields
		if seen&bit != 0 {
			return dupErr(fs.names[f])
		}
		seen |= bit
		w.pos = i
		if err := member(f); err != nil {
			return prefix(fs.names[f], err)
		}
		if i = skipWS(s, w.pos); i == len(s) {
			return errRejected
		}
		switch s[i] {
		case ',':
			i = skipWS(s, i+1)
		case '}':
			w.pos = i + 1
			return nil
		default:
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
	s, i := w.s, w.pos
	if i == len(s) || s[i] != '[' {
		return errRejected
	}
	if i = skipWS(s, i+1); i < len(s) && s[i] == ']' {
		w.pos = i + 1
		return nil
	}
	for n := 0; ; n++ {
		w.pos = i
		if err := elem(n); err != nil {
			return prefix("["+strconv.Itoa(n)+"]", err)
		}
		if i = skipWS(s, w.pos); i == len(s) {
			return errRejected
		}
		switch s[i] {
		case ',':
			i = skipWS(s, i+1)
		case ']':
			w.pos = i + 1
			return nil
		default:
			return errRejected
		}
	}
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
	// Mostly a string is plain ASCII: its value is the body between its
	// quotes.
	if i := skipWS(w.s, w.pos); i < len(w.s) && w.s[i] == '"' {
		if end, escaped, wide, ok := stringEnd(w.s, i+1); ok && !escaped && !wide {
			w.pos = end
			return w.s[i+1 : end-1], nil
		}
	}
	s, k, plain := w.raw()
	if k != '"' {
		return "", errRejected
	}
	if plain {
		return s[1 : len(s)-1], nil
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

// Eight bytes loaded as one word (word) are checked together and, if all
// are digits, combined in three multiplications: pairs, then fours, then
// the eight. Both steps are small enough to be inlined.
const (
	highNibbles = 0xF0F0F0F0F0F0F0F0
	zeros       = 0x3030303030303030 // "00000000"
	sixes       = 0x0606060606060606
)

// eightDigits reports whether all eight bytes of v are digits: a digit's
// high nibble is 3, and stays 3 when 6 is added to it.
func eightDigits(v uint64) bool {
	return v&highNibbles == zeros && (v+sixes)&highNibbles == zeros
}

// eightValue is the number eight digits loaded as v spell.
func eightValue(v uint64) uint64 {
	v -= zeros
	v = v*10 + v>>8 // byte 2k holds the pair of digits 2k and 2k+1
	const pairs = 0x000000FF000000FF
	return ((v&pairs)*(100+1000000<<32) + (v>>16&pairs)*(1+10000<<32)) >> 32
}

// numberByte marks the bytes that may go on a number.
var numberByte = [256]bool{'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true, '7': true,
	'8': true, '9': true, '+': true, '-': true, '.': true, 'e': true, 'E': true}

// setInteger stores an integer field. Mostly it is at most 18 digits with
// no sign, fraction or exponent (a counter, a byte count and a watermark
// are 8 to 13 digits long), read here eight digits at a time while there
// are eight, then one at a time; anything else is left to strconv
// (setIntegerSlow). Past 19 digits n overflows, but such a number is not
// taken here. The walk is in the setter itself: a call more per number
// costs more than the digits.
func setInteger[T int | int64 | uint64](w *walker, dst *T) error {
	s := w.s
	start := skipWS(s, w.pos)
	i := start
	var n uint64
	for i-start <= 8 && i+8 <= len(s) {
		v := word(s, i)
		if !eightDigits(v) {
			break
		}
		n = n*1e8 + eightValue(v)
		i += 8
	}
	for i < len(s) && s[i]-'0' <= 9 {
		n = n*10 + uint64(s[i]-'0')
		i++
	}
	if d := i - start; d == 0 || d > 18 || (s[start] == '0' && d > 1) || (i < len(s) && numberByte[s[i]]) {
		return setIntegerSlow(w, dst)
	}
	w.pos = i
	*dst = T(n)
	return nil
}

// setIntegerSlow stores an integer field by strconv, as encoding/json did.
func setIntegerSlow[T int | int64 | uint64](w *walker, dst *T) error {
	s, ok, err := w.number()
	if !ok {
		return err
	}
	if p, unsigned := any(dst).(*uint64); unsigned {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return errRejected
		}
		*p = n
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return errRejected
	}
	*dst = T(n)
	return nil
}

func setFloat(w *walker, dst *float64) error {
	if f, ok := w.decimal(); ok {
		*dst = f
		return nil
	}
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

// decimal reads a number of the form -?digits(.digits)? with at most 15
// significant digits, the common case of a fraction such as backpressure,
// without strconv; ok is false for anything else, which is left unread.
// Such a number's digits and its power of ten are exact as float64s, so
// one division rounds it exactly as strconv.ParseFloat does.
func (w *walker) decimal() (f float64, ok bool) {
	w.ws()
	s := w.s[w.pos:]
	i := 0
	neg := i < len(s) && s[i] == '-'
	if neg {
		i++
	}
	var mant uint64
	start := i
	for ; i < len(s) && s[i]-'0' <= 9; i++ {
		mant = mant*10 + uint64(s[i]-'0')
	}
	intDigits := i - start
	if intDigits == 0 || (s[start] == '0' && intDigits > 1) {
		return 0, false
	}
	frac := 0
	if i < len(s) && s[i] == '.' {
		i++
		fstart := i
		for ; i < len(s) && s[i]-'0' <= 9; i++ {
			mant = mant*10 + uint64(s[i]-'0')
		}
		frac = i - fstart
		if frac == 0 {
			return 0, false
		}
	}
	if intDigits+frac > 15 || (i < len(s) && numberByte[s[i]]) {
		return 0, false
	}
	f = float64(mant) / pow10[frac]
	if neg {
		f = -f
	}
	w.pos += i
	return f, true
}

// pow10 holds the powers of ten a decimal's fraction can need.
var pow10 = [16]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

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

var envelopeKeys = newFields("v", "job", "run", "worker", "seq", "sent_at", "slots", "tasks", "heartbeat", "events")

func (w *walker) envelope(e *Envelope) error {
	return w.object(envelopeKeys, func(f int) error {
		switch f {
		case 0:
			return setInteger(w, &e.V)
		case 1:
			return setStr(w, &e.JobID)
		case 2:
			return setInteger(w, &e.RunID)
		case 3:
			return setStr(w, &e.WorkerID)
		case 4:
			return setInteger(w, &e.Seq)
		case 5:
			return setTime(w, &e.SentAt)
		case 6:
			return setInteger(w, &e.Slots)
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

var taskKeys = newFields("op", "subtask", "state", "records_in", "records_out", "bytes_in", "bytes_out", "backpressure",
	"watermark_ms", "checkpointed", "checkpoint_bytes", "checkpoint_metadata", "committed", "error", "domain", "retry")

func (w *walker) task(t *Task) error {
	return w.object(taskKeys, func(f int) error {
		switch f {
		case 0:
			return setStr(w, &t.Operator)
		case 1:
			return setInteger(w, &t.Subtask)
		case 2:
			return w.taskState(&t.State)
		case 3:
			return setInteger(w, &t.RecordsIn)
		case 4:
			return setInteger(w, &t.RecordsOut)
		case 5:
			return setInteger(w, &t.BytesIn)
		case 6:
			return setInteger(w, &t.BytesOut)
		case 7:
			return setFloat(w, &t.Backpressure)
		case 8:
			return setInteger(w, &t.WatermarkMs)
		case 9:
			return setInteger(w, &t.Checkpointed)
		case 10:
			return setInteger(w, &t.CheckpointBytes)
		case 11:
			return setStr(w, &t.CheckpointMetadata)
		case 12:
			return setInteger(w, &t.Committed)
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
	for i, q := range quotedStates {
		if strings.HasPrefix(w.s[w.pos:], q) {
			*dst = TaskStates[i]
			w.pos += len(q)
			return nil
		}
	}
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

// quotedStates are the task states as workers send them.
var quotedStates = func() []string {
	q := make([]string, len(TaskStates))
	for i, s := range TaskStates {
		q[i] = strconv.Quote(string(s))
	}
	return q
}()

var heartbeatKeys = newFields("metrics")

func (w *walker) heartbeat(h *Heartbeat) error {
	return w.object(heartbeatKeys, func(int) error {
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

var metricsKeys = newFields("op", "subtask", "records_in", "records_out", "bytes_in", "bytes_out", "backpressure", "watermark_ms")

func (w *walker) taskMetrics(m *TaskMetrics) error {
	return w.object(metricsKeys, func(f int) error {
		switch f {
		case 0:
			return setStr(w, &m.Operator)
		case 1:
			return setInteger(w, &m.Subtask)
		case 2:
			return setInteger(w, &m.RecordsIn)
		case 3:
			return setInteger(w, &m.RecordsOut)
		case 4:
			return setInteger(w, &m.BytesIn)
		case 5:
			return setInteger(w, &m.BytesOut)
		case 6:
			return setFloat(w, &m.Backpressure)
		default:
			return setInteger(w, &m.WatermarkMs)
		}
	})
}

var eventKeys = newFields("kind", "op", "subtask", "epoch", "slots", "error", "domain", "retry", "phase", "bytes", "metadata")

func (w *walker) event(ev *Event) error {
	return w.object(eventKeys, func(f int) error {
		switch f {
		case 0:
			return setStr(w, &ev.Kind)
		case 1:
			return setStr(w, &ev.Operator)
		case 2:
			return setInteger(w, &ev.Subtask)
		case 3:
			return setInteger(w, &ev.Epoch)
		case 4:
			return setInteger(w, &ev.Slots)
		case 5:
			return setStr(w, &ev.Error)
		case 6:
			return setStr(w, &ev.Domain)
		case 7:
			return setStr(w, &ev.Retry)
		case 8:
			return setStr(w, &ev.Phase)
		case 9:
			return setInteger(w, &ev.Bytes)
		default:
			return setStr(w, &ev.Metadata)
		}
	})
}

package protocol

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
)

// Decode parses and validates one envelope of protocol v1 or v2. It rejects
// what the controller cannot act on: bodies over MaxEnvelopeBytes, bad JSON,
// fields the envelope's version does not have, another protocol version
// (the error matches ErrUnsupportedVersion), and anything Validate rejects. Every error is a
// *FieldError naming the field at fault.
func Decode(data []byte) (*Envelope, error) {
	return DecodeString(string(data))
}

// DecodeString is Decode of a body held as a string, as SQS delivers it.
// The envelope's strings share the body's memory: it is not copied.
func DecodeString(body string) (*Envelope, error) {
	if len(body) > MaxEnvelopeBytes {
		return nil, fieldErr("", "envelope is %d bytes, more than the %d allowed: split the news over several envelopes", len(body), MaxEnvelopeBytes)
	}
	env, err := decodeJSON(body)
	if err != nil {
		return nil, explain([]byte(body), err)
	}
	env.normalize()
	if err := env.Validate(); err != nil {
		return nil, err
	}
	return env, nil
}

// explain says why decodeJSON refused data (err): it decodes data again
// with encoding/json, which the walk matches, and words the first error as
// it always has been. Only a field named twice, which encoding/json let
// through, is reported as the walk found it (or as a version mismatch, if
// the envelope names another version).
func explain(data []byte, err error) error {
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return decodeError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fieldErr("", "envelope is followed by more data at byte %d: send exactly one JSON object per message", dec.InputOffset())
	}
	if env.V != 0 && env.V != V1 && env.V != V2 {
		if verr := env.Validate(); verr != nil {
			return verr
		}
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe
	}
	return fieldErr("", "envelope cannot be read: %v", err)
}

// normalize makes equal envelopes compare equal however they were spelled:
// empty lists become nil (they are left out when encoded) and the sending
// time is in UTC.
func (e *Envelope) normalize() {
	if len(e.Events) == 0 {
		e.Events = nil
	}
	if len(e.Tasks) == 0 {
		e.Tasks = nil
	}
	if e.Heartbeat != nil && len(e.Heartbeat.Metrics) == 0 {
		e.Heartbeat.Metrics = nil
	}
	e.SentAt = e.SentAt.UTC()
}

// Encode validates an envelope by the rules Decode applies and returns its
// JSON form. Workers use it so a bad envelope fails where it is built, not
// in the controller's dead-letter queue.
func Encode(e *Envelope) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(e)
	if err != nil {
		return nil, fieldErr("", "cannot encode the envelope: %v", err)
	}
	if len(data) > MaxEnvelopeBytes {
		return nil, fieldErr("", "envelope is %d bytes, more than the %d allowed: split the news over several envelopes", len(data), MaxEnvelopeBytes)
	}
	return data, nil
}

// decodeError turns an error of encoding/json into a *FieldError with the
// full path of the field (encoding/json leaves out list indices, and names
// no field at all for an unknown one). A body that names another protocol
// version is reported as such even if it does not parse as v1.
func decodeError(data []byte, err error) error {
	var probe struct {
		V *int `json:"v"`
	}
	version := Version
	if json.Unmarshal(data, &probe) == nil && probe.V != nil {
		if *probe.V != V1 && *probe.V != V2 {
			return (&Envelope{V: *probe.V}).Validate()
		}
		version = *probe.V
	}

	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var badTime *time.ParseError
	switch {
	case errors.Is(err, io.EOF):
		return fieldErr("", "envelope is empty: send one JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fieldErr("", "envelope is cut short: the JSON ends before the object does")
	case errors.As(err, &syntax):
		return fieldErr("", "envelope is not valid JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		path := pathAt(data, typ.Offset)
		if path == "" {
			return fieldErr("", "envelope must be a JSON object, not %s", typ.Value)
		}
		return fieldErr(path, "must be %s, not %s", jsonKind(typ.Type), typ.Value)
	case errors.As(err, &badTime):
		// sent_at is the envelope's only time.
		return fieldErr("sent_at", "%q is not a time: use RFC 3339, such as 2026-03-01T12:00:05.012Z", badTime.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		if path := unknownField(data); path != "" {
			return fieldErr(path, "is not a field of protocol v%d: leave it out (field names are listed in docs/protocol.md)", version)
		}
	}
	return fieldErr("", "envelope cannot be read: %v", err)
}

// jsonKind describes in JSON terms what a Go type accepts.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, not negative"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct:
		if reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
			return "a string"
		}
		return "an object"
	}
	return "a " + t.String()
}

var envelopeType = reflect.TypeFor[Envelope]()

// pathAt returns the path of the value that encoding/json was reading when
// it stopped at byte offset off (just past the value, or past the opening
// bracket of a list or object).
func pathAt(data []byte, off int64) string {
	var found string
	walkJSON(data, envelopeType, func(path string, end int64, unknown bool) bool {
		if !unknown && end >= off {
			found = path
			return false
		}
		return true
	})
	return found
}

// unknownField returns the path of the first key that names no field of
// the envelope's types.
func unknownField(data []byte) string {
	var found string
	walkJSON(data, envelopeType, func(path string, _ int64, unknown bool) bool {
		if unknown {
			found = path
			return false
		}
		return true
	})
	return found
}

// walkJSON visits every value of data with its path and the offset where it
// (or, for a list or object, its opening bracket) ends, following the Go
// type the value decodes into; keys that match no field are visited with
// unknown set. It stops when visit returns false or the JSON ends. It is
// only used to explain errors, so it is written for clarity, not speed.
func walkJSON(data []byte, root reflect.Type, visit func(path string, end int64, unknown bool) bool) {
	type frame struct {
		typ     reflect.Type // the type of the list or object
		path    string
		list    bool
		index   int
		wantKey bool
		key     string
		keyType reflect.Type // the type of the value under key
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // a number too large for float64 is still a token
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			if len(stack) > 0 && !stack[len(stack)-1].list {
				stack[len(stack)-1].wantKey = true
			}
			continue
		}

		// Work out the path and type of this value, or handle a key.
		path, typ := "", root
		if len(stack) > 0 {
			top := stack[len(stack)-1]
			switch {
			case top.list:
				path = fmt.Sprintf("%s[%d]", top.path, top.index)
				typ = elem(top.typ)
				top.index++
			case top.wantKey:
				key, _ := tok.(string)
				top.key, top.keyType = key, fieldType(top.typ, key)
				top.wantKey = false
				if top.keyType == nil && top.typ != nil {
					// encoding/json would refuse this key.
					if !visit(join(top.path, key), dec.InputOffset(), true) {
						return
					}
				}
				continue
			default:
				path, typ = join(top.path, top.key), top.keyType
				top.wantKey = true
			}
		}
		if !visit(path, dec.InputOffset(), false) {
			return
		}
		if d, ok := tok.(json.Delim); ok {
			f := &frame{typ: deref(typ), path: path, list: d == '[', wantKey: d == '{'}
			if !fits(f.typ, f.list) {
				f.typ = nil // a value of the wrong shape: nothing below it is known
			}
			stack = append(stack, f)
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func deref(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// fits reports whether a list (or an object) decodes into t field by field.
func fits(t reflect.Type, list bool) bool {
	if t == nil || reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		return false
	}
	if list {
		return t.Kind() == reflect.Slice || t.Kind() == reflect.Array
	}
	return t.Kind() == reflect.Struct
}

func elem(t reflect.Type) reflect.Type {
	if t == nil || (t.Kind() != reflect.Slice && t.Kind() != reflect.Array) {
		return nil
	}
	return t.Elem()
}

// fieldType finds the field a JSON key decodes into, matching names as
// encoding/json does (exactly, else ignoring case), or returns nil.
func fieldType(t reflect.Type, key string) reflect.Type {
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var folded reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" {
			name = f.Name
		}
		if name == key {
			return f.Type
		}
		if folded == nil && strings.EqualFold(name, key) {
			folded = f.Type
		}
	}
	return folded
}

// String renders an envelope compactly for logs and test failures.
func (e *Envelope) String() string {
	if e == nil {
		return "<nil envelope>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "v%d job=%s run=%d worker=%s seq=%d", e.V, e.JobID, e.RunID, e.WorkerID, e.Seq)
	if e.Heartbeat != nil {
		fmt.Fprintf(&b, " heartbeat(%d metrics)", len(e.Heartbeat.Metrics))
	}
	if e.V >= V2 {
		fmt.Fprintf(&b, " slots=%d", e.Slots)
		for i := range e.Tasks {
			t := &e.Tasks[i]
			fmt.Fprintf(&b, " %s/%d:%s", t.Operator, t.Subtask, t.State)
			if t.Checkpointed != 0 {
				fmt.Fprintf(&b, "@%d", t.Checkpointed)
			}
			if t.Committed != 0 {
				fmt.Fprintf(&b, "+%d", t.Committed)
			}
		}
	}
	for _, ev := range e.Events {
		b.WriteString(" ")
		b.WriteString(string(ev.Kind))
		if ev.Operator != "" {
			fmt.Fprintf(&b, "(%s/%d", ev.Operator, ev.Subtask)
			if ev.Epoch != 0 {
				fmt.Fprintf(&b, "@%d", ev.Epoch)
			}
			b.WriteString(")")
		}
	}
	return b.String()
}

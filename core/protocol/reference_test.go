package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// decodeReference is Decode as it was written on encoding/json (with
// DisallowUnknownFields and the field-path rewrite of its errors). It is
// the reference the differential fuzz test holds Decode to, and one of the
// decoders measured side by side in BenchmarkDecoders.
func decodeReference(data []byte) (*Envelope, error) {
	if len(data) > MaxEnvelopeBytes {
		return nil, fieldErr("", "envelope is %d bytes, more than the %d allowed: split the news over several envelopes", len(data), MaxEnvelopeBytes)
	}
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, decodeError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fieldErr("", "envelope is followed by more data at byte %d: send exactly one JSON object per message", dec.InputOffset())
	}
	env.normalize()
	if err := env.Validate(); err != nil {
		return nil, err
	}
	return &env, nil
}

// isDuplicate reports whether err is the one refusal Decode makes and the
// reference does not: a field named twice in an object.
func isDuplicate(err error) bool {
	var fe *FieldError
	return errors.As(err, &fe) && strings.HasPrefix(fe.Problem, "appears more than once")
}

// FuzzDecodeMatchesReference holds Decode to the encoding/json decoder it
// replaced: both accept or both refuse; what they accept is the same
// envelope; what they refuse they refuse with the same error (field path,
// message and version mismatch). The one deliberate difference: Decode
// refuses a field named twice, which encoding/json let through.
func FuzzDecodeMatchesReference(f *testing.F) {
	addSeeds(f)
	f.Add([]byte(`{"v":2,"v":2,"job":"j","run":1,"worker":"w","seq":1,"sent_at":"2026-03-01T14:00:00Z","slots":1}`))
	f.Add([]byte(`{"v":2,"job":"j","run":1,"worker":"w","seq":1,"sent_at":"2026-03-01T14:00:00Z","slots":1,"tasks":[null,{"op":"a\u00e9\ud800","subtask":1,"state":"running","STATE":"running"}]}`))
	f.Add([]byte(`{"v":1,"job":"j","run":1,"worker":"w\u0041","seq":1,"sent_at":"2026-03-01T14:00:00Z","heartbeat":{"metrics":[{"op":"o","subtask":0,"records_in":null}]}} `))
	f.Add([]byte(`{"v":1,"sent_at":5}`))
	f.Add([]byte(`{"v":1,"heartbeat":{"metrics":{}}, "x": 1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Decode(data)
		want, wantErr := decodeReference(data)
		switch {
		case err != nil && wantErr == nil:
			if !isDuplicate(err) {
				t.Fatalf("Decode refuses what the reference accepts: %v\ninput: %q", err, data)
			}
		case err == nil && wantErr != nil:
			t.Fatalf("Decode accepts what the reference refuses (%v)\ninput: %q", wantErr, data)
		case err != nil:
			if isDuplicate(err) {
				return
			}
			if err.Error() != wantErr.Error() || errors.Is(err, ErrUnsupportedVersion) != errors.Is(wantErr, ErrUnsupportedVersion) {
				t.Fatalf("errors differ:\n   Decode %v\nreference %v\ninput: %q", err, wantErr, data)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
		case !reflect.DeepEqual(got, want):
			t.Fatalf("envelopes differ:\n   Decode %+v\nreference %+v\ninput: %q", got, want, data)
		}
	})
}

func TestDecodeRefusesRepeatedFields(t *testing.T) {
	valid := string(mustEncode(t, fullEnvelopeV2()))
	cases := []struct{ name, body, field string }{
		{"top level", strings.Replace(valid, `"seq":42`, `"seq":42,"seq":43`, 1), "seq"},
		{"differing in case", strings.Replace(valid, `"seq":42`, `"seq":42,"SEQ":43`, 1), "seq"},
		{"in a task", strings.Replace(valid, `"state":"running"`, `"state":"running","state":"failed"`, 1), "tasks[0].state"},
		{"a list", strings.Replace(valid, `"seq":42`, `"seq":42,"tasks":[]`, 1), "tasks"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode([]byte(c.body))
			assertFieldError(t, err, c.field, "appears more than once")
		})
	}
	// A repeated field of an envelope of another version is a version
	// mismatch first.
	_, err := Decode([]byte(`{"v":3,"v":3,"job":"j"}`))
	if !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("error = %v, want ErrUnsupportedVersion", err)
	}
}

package protocol

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecode checks that Decode never panics, and that whatever it accepts
// encodes again and decodes to the same envelope: the controller and the
// workers agree on every message the controller acts on.
func FuzzDecode(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := Decode(data)
		if err != nil {
			if env != nil {
				t.Fatalf("Decode returned an envelope with error %v", err)
			}
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		again, err := Encode(env)
		if err != nil {
			t.Fatalf("accepted envelope does not encode: %v\ninput: %q", err, data)
		}
		env2, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded envelope is rejected: %v\ninput: %q\nencoded: %s", err, data, again)
		}
		if !reflect.DeepEqual(env, env2) {
			t.Fatalf("round trip changed the envelope:\n first %+v\nsecond %+v", env, env2)
		}
	})
}

// addSeeds gives a fuzz target envelopes of both versions, the odd
// spellings encoding/json accepts, and one body for every rejection the
// codec tests check.
func addSeeds(f *testing.F) {
	f.Add(mustEncode(f, fullEnvelope()))
	f.Add(mustEncode(f, heartbeatEnvelope(8)))
	f.Add(mustEncode(f, fullEnvelopeV2()))
	f.Add(mustEncode(f, heartbeatEnvelopeV1(8)))
	f.Add([]byte(`{"v":1,"job":"j","run":1,"worker":"w","seq":1,"sent_at":"2026-03-01T14:00:00+02:00","heartbeat":{}}`))
	f.Add([]byte(`{"v":3,"job":"j"}`))
	f.Add([]byte(`{"v":2,"job":"j","run":1,"worker":"w","seq":1,"sent_at":"2026-03-01T14:00:00+02:00","slots":1,"tasks":[{"op":"o","subtask":0,"state":"running"}]}`))
	f.Add([]byte(`{"V":1,"JOB":"j","run":1,"worker":"w","seq":1,"sent_at":"0000-01-01T00:30:00+01:00","heartbeat":{}}`))
	f.Add([]byte(`[{"events":[{"epoch":"x"}]}]`))
	for _, r := range rejections() {
		env := fullEnvelope()
		r.mutate(env)
		if body, err := json.Marshal(env); err == nil && len(body) < 4096 {
			f.Add(body)
		}
	}
	for _, r := range rejectionsV2() {
		env := fullEnvelopeV2()
		r.mutate(env)
		if body, err := json.Marshal(env); err == nil && len(body) < 4096 {
			f.Add(body)
		}
	}
}

package protocol

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/weirstream/weir/core/job"
)

// TestDocsExamples keeps the JSON examples of docs/protocol.md valid: each
// envelope decodes, each event passes Validate, and the command record is a
// job.Commands.
func TestDocsExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) < 10 {
		t.Fatalf("found %d JSON examples, expected one per event kind and more", len(blocks))
	}
	kinds := map[Kind]bool{}
	for _, b := range blocks {
		body := b[1]
		strict := func(v any) error {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			return dec.Decode(v)
		}
		switch {
		case bytes.Contains(body, []byte(`"v": 1`)):
			if _, err := Decode(body); err != nil {
				t.Errorf("envelope example does not decode: %v\n%s", err, body)
			}
		case bytes.Contains(body, []byte(`"run_id"`)):
			var c job.Commands
			if err := strict(&c); err != nil {
				t.Errorf("command record example is not a job.Commands: %v\n%s", err, body)
			}
		default:
			var ev Event
			if err := strict(&ev); err != nil {
				t.Errorf("event example does not parse: %v\n%s", err, body)
				continue
			}
			if err := ev.Validate(); err != nil {
				t.Errorf("event example is invalid: %v\n%s", err, body)
			}
			kinds[ev.Kind] = true
		}
	}
	for _, k := range Kinds {
		if !kinds[k] {
			t.Errorf("docs/protocol.md has no example of %s", k)
		}
		if !strings.Contains(string(doc), "#### `"+string(k)+"`") {
			t.Errorf("docs/protocol.md has no section on %s", k)
		}
	}
}

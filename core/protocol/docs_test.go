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
// envelope (v1 and v2) decodes, each task entry and event passes Validate,
// and the command record is a job.Commands.
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
	versions := map[int]bool{}
	states := map[TaskState]bool{}
	for _, b := range blocks {
		body := b[1]
		strict := func(v any) error {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			return dec.Decode(v)
		}
		switch {
		case bytes.Contains(body, []byte(`"v": `)):
			env, err := Decode(body)
			if err != nil {
				t.Errorf("envelope example does not decode: %v\n%s", err, body)
				continue
			}
			versions[env.V] = true
			for _, task := range env.Tasks {
				states[task.State] = true
			}
		case bytes.Contains(body, []byte(`"state"`)):
			var task Task
			if err := strict(&task); err != nil {
				t.Errorf("task example does not parse: %v\n%s", err, body)
				continue
			}
			if err := task.Validate(); err != nil {
				t.Errorf("task example is invalid: %v\n%s", err, body)
			}
			states[task.State] = true
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
	for _, v := range []int{V1, V2} {
		if !versions[v] {
			t.Errorf("docs/protocol.md has no envelope example of version %d", v)
		}
	}
	for _, st := range []TaskState{Running, Finished, Failed} {
		if !states[st] {
			t.Errorf("docs/protocol.md has no task example in state %s", st)
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

// Package resources creates the data resources that the SAM template
// declares (DynamoDB tables, SQS queues and EventBridge Scheduler schedule
// groups) against whatever endpoint the SDK config points at: the local
// emulator, LocalStack or AWS. The template is the only list of resources:
// each data resource is created from its own properties, and every other
// resource type (functions, roles, the API, the ECS service, alarms) is
// skipped by type and left to `sam deploy`. Intrinsic functions are resolved
// in the three forms the data resources use (see resolve.go); anything else
// is refused.
package resources

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/intrinsics"
)

// Resource types this package creates. Everything else in the template
// (functions, roles, APIs, services, alarms) is left to `sam deploy`.
const (
	TypeTable         = "AWS::DynamoDB::Table"
	TypeQueue         = "AWS::SQS::Queue"
	TypeScheduleGroup = "AWS::Scheduler::ScheduleGroup"
)

// Template is a parsed SAM/CloudFormation template, ready to create its
// tables and queues. It is read-only after Load and safe for concurrent use.
type Template struct {
	source     string
	parameters cloudformation.Parameters
	resources  map[string]rawResource
	// order lists the tables and queues so that every resource comes after
	// the ones it refers to.
	order []string
}

// rawResource is one entry of the template's Resources section with its
// intrinsic functions still unresolved.
type rawResource struct {
	Type       string
	Properties map[string]any
	DependsOn  any
	Condition  string
}

// goformation registers its YAML tag handlers in a package-level map on
// every parse, which races when two goroutines parse at once.
var parseMu sync.Mutex

// Load reads and parses the template at path.
func Load(path string) (*Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read template: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	t.source = path
	return t, nil
}

// Parse parses a template from YAML (JSON is YAML too). Intrinsic functions
// are kept as written, to be resolved when resources are created.
func Parse(data []byte) (*Template, error) {
	parseMu.Lock()
	// NoProcess keeps Ref/GetAtt/Sub intact: goformation's own resolution
	// would turn a GetAtt into nil and a Ref into the parameter's default.
	doc, err := intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{NoProcess: true})
	parseMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("parse template: %w", err)
	}

	var sections struct {
		Parameters json.RawMessage
		Resources  map[string]json.RawMessage
	}
	if err := decodeNumbers(doc, &sections); err != nil {
		return nil, fmt.Errorf("parse template: %w", err)
	}
	t := &Template{
		source:    "template",
		resources: make(map[string]rawResource, len(sections.Resources)),
	}
	if len(sections.Parameters) > 0 && string(sections.Parameters) != "null" {
		if err := json.Unmarshal(sections.Parameters, &t.parameters); err != nil {
			return nil, fmt.Errorf("template Parameters: %w", err)
		}
	}
	if len(sections.Resources) == 0 {
		return nil, errors.New("template has no Resources")
	}
	for id, raw := range sections.Resources {
		var r rawResource
		if err := decodeNumbers(raw, &r); err != nil {
			return nil, fmt.Errorf("resource %s: %w", id, err)
		}
		if r.Type == "" {
			return nil, fmt.Errorf("resource %s has no Type", id)
		}
		if creatable(r.Type) && r.Condition != "" {
			return nil, fmt.Errorf("resource %s (%s) has Condition %s: conditions on data resources are not supported outside CloudFormation; remove it", id, r.Type, r.Condition)
		}
		t.resources[id] = r
	}
	for name, p := range t.parameters {
		if err := checkParameterDeclaration(name, p); err != nil {
			return nil, err
		}
	}
	order, err := t.creationOrder()
	if err != nil {
		return nil, err
	}
	t.order = order
	return t, nil
}

// decodeNumbers decodes JSON keeping numbers as json.Number, so a property
// written as 345600 reaches the SDK as exactly that.
func decodeNumbers(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

// LogicalIDs returns the logical ids of the data resources the template
// declares, in creation order.
func (t *Template) LogicalIDs() []string {
	return append([]string(nil), t.order...)
}

// creatable reports whether this package creates resources of type typ.
func creatable(typ string) bool {
	return typ == TypeTable || typ == TypeQueue || typ == TypeScheduleGroup
}

// creationOrder sorts the tables and queues so that each comes after every
// table or queue it refers to (a queue's RedrivePolicy names its DLQ's ARN,
// which exists only once the DLQ does). Ties keep alphabetical order so runs
// are reproducible.
func (t *Template) creationOrder() ([]string, error) {
	var ids []string
	for id, r := range t.resources {
		if creatable(r.Type) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)

	deps := make(map[string][]string, len(ids))
	for _, id := range ids {
		r := t.resources[id]
		refs := map[string]bool{}
		collectRefs(r.Properties, refs)
		for _, d := range dependsOn(r.DependsOn) {
			refs[d] = true
		}
		for ref := range refs {
			if ref == id {
				return nil, fmt.Errorf("resource %s refers to itself", id)
			}
			if other, ok := t.resources[ref]; ok && creatable(other.Type) {
				deps[id] = append(deps[id], ref)
			}
		}
		sort.Strings(deps[id])
	}

	const (
		unvisited = iota
		visiting
		done
	)
	state := make(map[string]int, len(ids))
	var order []string
	var visit func(id string, path []string) error
	visit = func(id string, path []string) error {
		switch state[id] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("resources refer to each other in a cycle: %s", strings.Join(append(path, id), " -> "))
		}
		state[id] = visiting
		for _, d := range deps[id] {
			if err := visit(d, append(path, id)); err != nil {
				return err
			}
		}
		state[id] = done
		order = append(order, id)
		return nil
	}
	for _, id := range ids {
		if err := visit(id, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// dependsOn reads a DependsOn attribute, which is a string or a list.
func dependsOn(v any) []string {
	switch d := v.(type) {
	case string:
		return []string{d}
	case []any:
		var out []string
		for _, e := range d {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// collectRefs adds to refs every name that v refers to through Ref,
// Fn::GetAtt or a ${Name} / ${Name.Attr} inside Fn::Sub.
func collectRefs(v any, refs map[string]bool) {
	switch n := v.(type) {
	case map[string]any:
		if len(n) == 1 {
			for fn, arg := range n {
				switch fn {
				case "Ref":
					if s, ok := arg.(string); ok {
						refs[s] = true
						return
					}
				case "Fn::GetAtt":
					if name, _, ok := getAttTarget(arg); ok {
						refs[name] = true
					}
				case "Fn::Sub":
					if format, ok := arg.(string); ok {
						for _, name := range subNames(format) {
							name, _, _ = strings.Cut(name, ".")
							refs[name] = true
						}
					}
				}
			}
		}
		for _, e := range n {
			collectRefs(e, refs)
		}
	case []any:
		for _, e := range n {
			collectRefs(e, refs)
		}
	}
}

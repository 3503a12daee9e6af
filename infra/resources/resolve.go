package resources

import (
	"fmt"
	"strings"
)

// The data resources use three forms of intrinsic function, and only these
// are resolved outside CloudFormation:
//
//   - Fn::Sub of a string whose only placeholder is ${AWS::StackName}
//   - Fn::GetAtt X.Arn of another data resource
//   - Ref of a template parameter
//
// Anything else is refused with an error that names it, so a template
// change that needs more is noticed at once rather than half-resolved.
const supportedForms = `!Sub "${AWS::StackName}-…", !GetAtt X.Arn or !Ref Parameter`

// scope is everything an intrinsic function can refer to while one stack is
// being created.
type scope struct {
	t         *Template
	stackName string
	params    map[string]paramValue
	// done holds the data resources created (or found) so far.
	done map[string]Resource
}

func newScope(t *Template, stackName string, params map[string]paramValue) *scope {
	return &scope{t: t, stackName: stackName, params: params, done: map[string]Resource{}}
}

// resolve returns v with every intrinsic function replaced by its value.
// path names the property for error messages.
func (s *scope) resolve(v any, path string) (any, error) {
	switch n := v.(type) {
	case map[string]any:
		if len(n) == 1 {
			for key, arg := range n {
				if key == "Ref" || strings.HasPrefix(key, "Fn::") {
					return s.intrinsic(key, arg, path)
				}
			}
		}
		out := make(map[string]any, len(n))
		for key, e := range n {
			r, err := s.resolve(e, path+"."+key)
			if err != nil {
				return nil, err
			}
			out[key] = r
		}
		return out, nil
	case []any:
		out := make([]any, 0, len(n))
		for i, e := range n {
			r, err := s.resolve(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		return out, nil
	}
	return v, nil
}

func (s *scope) intrinsic(fn string, arg any, path string) (any, error) {
	where := path + ": " + fn
	switch fn {
	case "Ref":
		name, ok := arg.(string)
		if !ok {
			return nil, fmt.Errorf("%s: takes a parameter name, got %v", where, arg)
		}
		p, ok := s.params[name]
		if !ok {
			if raw, isResource := s.t.resources[name]; isResource && !creatable(raw.Type) {
				return nil, fmt.Errorf("%s: %s is a %s, which only CloudFormation creates (supported: %s)", where, name, raw.Type, supportedForms)
			}
			return nil, fmt.Errorf("%s %s: only template parameters can be referenced here (supported: %s)", where, name, supportedForms)
		}
		if p.err != nil {
			return nil, fmt.Errorf("%s: %w", where, p.err)
		}
		return p.value, nil
	case "Fn::GetAtt":
		name, attr, ok := getAttTarget(arg)
		if !ok || attr != "Arn" {
			return nil, fmt.Errorf("%s %v: only X.Arn is resolved here (supported: %s)", where, arg, supportedForms)
		}
		r, err := s.resource(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return r.ARN, nil
	case "Fn::Sub":
		format, ok := arg.(string)
		if !ok {
			return nil, fmt.Errorf("%s: takes a string here, not a list with variables (supported: %s)", where, supportedForms)
		}
		for _, name := range subNames(format) {
			if name != "AWS::StackName" {
				return nil, fmt.Errorf("%s %q: ${%s} is not resolved here; only ${AWS::StackName} is (supported: %s)", where, format, name, supportedForms)
			}
		}
		return strings.ReplaceAll(format, "${AWS::StackName}", s.stackName), nil
	}
	return nil, fmt.Errorf("%s: not supported when creating resources outside CloudFormation (supported: %s)", where, supportedForms)
}

// resource returns a data resource that has already been created.
func (s *scope) resource(name string) (Resource, error) {
	if r, ok := s.done[name]; ok {
		return r, nil
	}
	raw, ok := s.t.resources[name]
	if !ok {
		return Resource{}, fmt.Errorf("%q is not a resource of the template", name)
	}
	// creationOrder puts the data resources a resource refers to first, so
	// this is a reference to something only CloudFormation creates.
	return Resource{}, fmt.Errorf("%s is a %s, which only CloudFormation creates; data resources can refer only to parameters and other data resources", name, raw.Type)
}

func getAttTarget(arg any) (name, attr string, ok bool) {
	switch a := arg.(type) {
	case string:
		name, attr, ok = strings.Cut(a, ".")
	case []any:
		if len(a) == 2 {
			var ok1, ok2 bool
			name, ok1 = a[0].(string)
			attr, ok2 = a[1].(string)
			ok = ok1 && ok2
		}
	}
	return name, attr, ok && name != "" && attr != ""
}

// subNames lists the ${Name} placeholders of a Fn::Sub format, skipping
// ${!Literal} escapes.
func subNames(format string) []string {
	var names []string
	for rest := format; ; {
		i := strings.Index(rest, "${")
		if i < 0 {
			return names
		}
		end := strings.Index(rest[i:], "}")
		if end < 0 {
			return append(names, rest[i+2:])
		}
		if name := rest[i+2 : i+end]; !strings.HasPrefix(name, "!") {
			names = append(names, strings.TrimSpace(name))
		}
		rest = rest[i+end+1:]
	}
}

package resources

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// noValue is what Ref AWS::NoValue resolves to: the enclosing property or
// list element is dropped, as CloudFormation does.
type noValue struct{}

// scope is everything an intrinsic function can refer to while one stack is
// being created.
type scope struct {
	t          *Template
	stackName  string
	region     string
	accountID  string
	params     map[string]paramValue
	conditions map[string]bool
	// evaluating guards against conditions that refer to themselves.
	evaluating map[string]bool
	// done holds the tables and queues created (or found) so far.
	done map[string]Resource
}

func newScope(t *Template, stackName, region, accountID string, params map[string]paramValue) *scope {
	return &scope{
		t:          t,
		stackName:  stackName,
		region:     region,
		accountID:  accountID,
		params:     params,
		conditions: map[string]bool{},
		evaluating: map[string]bool{},
		done:       map[string]Resource{},
	}
}

func (s *scope) partition() string {
	switch {
	case strings.HasPrefix(s.region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(s.region, "us-gov-"):
		return "aws-us-gov"
	}
	return "aws"
}

func (s *scope) urlSuffix() string {
	if s.partition() == "aws-cn" {
		return "amazonaws.com.cn"
	}
	return "amazonaws.com"
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
			if _, drop := r.(noValue); !drop {
				out[key] = r
			}
		}
		return out, nil
	case []any:
		out := make([]any, 0, len(n))
		for i, e := range n {
			r, err := s.resolve(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			if _, drop := r.(noValue); !drop {
				out = append(out, r)
			}
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
			return nil, fmt.Errorf("%s: takes a name, got %v", where, arg)
		}
		v, err := s.ref(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return v, nil
	case "Fn::GetAtt":
		name, attr, ok := getAttTarget(arg)
		if !ok {
			return nil, fmt.Errorf("%s: takes [LogicalId, Attribute] or \"LogicalId.Attribute\", got %v", where, arg)
		}
		v, err := s.getAtt(name, attr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return v, nil
	case "Fn::Sub":
		return s.sub(arg, where)
	case "Fn::Join":
		return s.join(arg, where)
	case "Fn::Select":
		return s.selectFn(arg, where)
	case "Fn::Split":
		return s.split(arg, where)
	case "Fn::FindInMap":
		return s.findInMap(arg, where)
	case "Fn::If":
		return s.ifFn(arg, where)
	case "Fn::Base64":
		r, err := s.resolve(arg, path)
		if err != nil {
			return nil, err
		}
		str, err := scalarString(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return base64.StdEncoding.EncodeToString([]byte(str)), nil
	case "Fn::Equals", "Fn::And", "Fn::Or", "Fn::Not":
		return s.condition(map[string]any{fn: arg}, where)
	}
	return nil, fmt.Errorf("%s: not supported when creating resources outside CloudFormation (use Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::Select, Fn::Split, Fn::FindInMap, Fn::If or Fn::Base64)", where)
}

// ref resolves Ref: a pseudo parameter, a template parameter, or a table
// (its name) or queue (its URL) created earlier.
func (s *scope) ref(name string) (any, error) {
	switch name {
	case "AWS::StackName":
		return s.stackName, nil
	case "AWS::Region":
		return s.region, nil
	case "AWS::Partition":
		return s.partition(), nil
	case "AWS::URLSuffix":
		return s.urlSuffix(), nil
	case "AWS::NoValue":
		return noValue{}, nil
	case "AWS::NotificationARNs":
		return []any{}, nil
	case "AWS::AccountId":
		if s.accountID == "" {
			return nil, fmt.Errorf("AWS::AccountId is unknown: set the account id in Options")
		}
		return s.accountID, nil
	case "AWS::StackId":
		if s.accountID == "" {
			return nil, fmt.Errorf("AWS::StackId needs the account id: set it in Options")
		}
		return fmt.Sprintf("arn:%s:cloudformation:%s:%s:stack/%s/local", s.partition(), s.region, s.accountID, s.stackName), nil
	}
	if p, ok := s.params[name]; ok {
		if p.err != nil {
			return nil, p.err
		}
		return p.value, nil
	}
	r, err := s.resource(name)
	if err != nil {
		return nil, err
	}
	if r.Type == TypeQueue {
		return r.URL, nil
	}
	return r.Name, nil
}

func (s *scope) getAtt(name, attr string) (any, error) {
	r, err := s.resource(name)
	if err != nil {
		return nil, err
	}
	var v string
	switch {
	case attr == "Arn":
		v = r.ARN
	case r.Type == TypeQueue && attr == "QueueName":
		v = r.Name
	case r.Type == TypeQueue && attr == "QueueUrl":
		v = r.URL
	case r.Type == TypeTable && attr == "StreamArn":
		v = r.StreamARN
	default:
		return nil, fmt.Errorf("%s (%s) has no attribute %q here", name, r.Type, attr)
	}
	if v == "" {
		return nil, fmt.Errorf("%s (%s) has no %s", name, r.Type, attr)
	}
	return v, nil
}

// resource returns a table or queue that has already been created.
func (s *scope) resource(name string) (Resource, error) {
	if r, ok := s.done[name]; ok {
		return r, nil
	}
	raw, ok := s.t.resources[name]
	switch {
	case !ok:
		return Resource{}, fmt.Errorf("%q is neither a parameter nor a resource of the template", name)
	case !creatable(raw.Type):
		return Resource{}, fmt.Errorf("%s is a %s, which only CloudFormation creates; tables and queues can refer only to parameters, pseudo parameters and other tables and queues", name, raw.Type)
	}
	// creationOrder puts dependencies first, so the only way to get here is
	// a resource skipped by its Condition.
	return Resource{}, fmt.Errorf("%s is not created (its Condition %s is false)", name, raw.Condition)
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

// subArgs splits Fn::Sub's argument: a format string, or [format, {vars}].
func subArgs(arg any) (string, map[string]any) {
	switch a := arg.(type) {
	case string:
		return a, nil
	case []any:
		if len(a) == 2 {
			format, _ := a[0].(string)
			vars, _ := a[1].(map[string]any)
			return format, vars
		}
	}
	return "", nil
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
			return names
		}
		if name := rest[i+2 : i+end]; !strings.HasPrefix(name, "!") {
			names = append(names, strings.TrimSpace(name))
		}
		rest = rest[i+end+1:]
	}
}

func (s *scope) sub(arg any, where string) (any, error) {
	format, rawVars := subArgs(arg)
	if format == "" {
		if _, ok := arg.(string); !ok {
			return nil, fmt.Errorf("%s: takes a string or [string, {variables}], got %v", where, arg)
		}
	}
	vars := make(map[string]string, len(rawVars))
	for k, v := range rawVars {
		r, err := s.resolve(v, where+"."+k)
		if err != nil {
			return nil, err
		}
		str, err := scalarString(r)
		if err != nil {
			return nil, fmt.Errorf("%s: variable %s: %w", where, k, err)
		}
		vars[k] = str
	}
	var b strings.Builder
	for rest := format; ; {
		i := strings.Index(rest, "${")
		if i < 0 {
			b.WriteString(rest)
			break
		}
		end := strings.Index(rest[i:], "}")
		if end < 0 {
			return nil, fmt.Errorf("%s: unclosed ${ in %q", where, format)
		}
		b.WriteString(rest[:i])
		name := strings.TrimSpace(rest[i+2 : i+end])
		rest = rest[i+end+1:]
		if lit, ok := strings.CutPrefix(name, "!"); ok {
			b.WriteString("${" + lit + "}")
			continue
		}
		if v, ok := vars[name]; ok {
			b.WriteString(v)
			continue
		}
		var v any
		var err error
		if res, attr, dotted := strings.Cut(name, "."); dotted && !strings.HasPrefix(name, "AWS::") {
			v, err = s.getAtt(res, attr)
		} else {
			v, err = s.ref(name)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: ${%s}: %w", where, name, err)
		}
		str, err := scalarString(v)
		if err != nil {
			return nil, fmt.Errorf("%s: ${%s}: %w", where, name, err)
		}
		b.WriteString(str)
	}
	return b.String(), nil
}

func (s *scope) list(arg any, n int, where, shape string) ([]any, error) {
	a, ok := arg.([]any)
	if !ok || len(a) != n {
		return nil, fmt.Errorf("%s: takes %s, got %v", where, shape, arg)
	}
	out := make([]any, n)
	for i, e := range a {
		r, err := s.resolve(e, fmt.Sprintf("%s[%d]", where, i))
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

func (s *scope) join(arg any, where string) (any, error) {
	a, err := s.list(arg, 2, where, "[delimiter, [values]]")
	if err != nil {
		return nil, err
	}
	delim, ok := a[0].(string)
	items, ok2 := a[1].([]any)
	if !ok || !ok2 {
		return nil, fmt.Errorf("%s: takes [delimiter, [values]]", where)
	}
	parts := make([]string, len(items))
	for i, it := range items {
		if parts[i], err = scalarString(it); err != nil {
			return nil, fmt.Errorf("%s: value %d: %w", where, i, err)
		}
	}
	return strings.Join(parts, delim), nil
}

func (s *scope) selectFn(arg any, where string) (any, error) {
	a, err := s.list(arg, 2, where, "[index, [values]]")
	if err != nil {
		return nil, err
	}
	idxStr, err := scalarString(a[0])
	if err != nil {
		return nil, fmt.Errorf("%s: index: %w", where, err)
	}
	idx, err := strconv.Atoi(idxStr)
	items, ok := a[1].([]any)
	if err != nil || !ok {
		return nil, fmt.Errorf("%s: takes [index, [values]], got %v", where, arg)
	}
	if idx < 0 || idx >= len(items) {
		return nil, fmt.Errorf("%s: index %d is outside a list of %d", where, idx, len(items))
	}
	return items[idx], nil
}

func (s *scope) split(arg any, where string) (any, error) {
	a, err := s.list(arg, 2, where, "[delimiter, string]")
	if err != nil {
		return nil, err
	}
	delim, ok := a[0].(string)
	str, ok2 := a[1].(string)
	if !ok || !ok2 || delim == "" {
		return nil, fmt.Errorf("%s: takes [delimiter, string]", where)
	}
	var out []any
	for _, p := range strings.Split(str, delim) {
		out = append(out, p)
	}
	return out, nil
}

func (s *scope) findInMap(arg any, where string) (any, error) {
	a, err := s.list(arg, 3, where, "[MapName, TopLevelKey, SecondLevelKey]")
	if err != nil {
		return nil, err
	}
	keys := make([]string, 3)
	for i := range a {
		if keys[i], err = scalarString(a[i]); err != nil {
			return nil, fmt.Errorf("%s: key %d: %w", where, i, err)
		}
	}
	m, ok := s.t.mappings[keys[0]].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: no mapping %q", where, keys[0])
	}
	top, ok := m[keys[1]].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: mapping %s has no key %q", where, keys[0], keys[1])
	}
	v, ok := top[keys[2]]
	if !ok {
		return nil, fmt.Errorf("%s: mapping %s.%s has no key %q", where, keys[0], keys[1], keys[2])
	}
	return v, nil
}

func (s *scope) ifFn(arg any, where string) (any, error) {
	a, ok := arg.([]any)
	if !ok || len(a) != 3 {
		return nil, fmt.Errorf("%s: takes [ConditionName, ValueIfTrue, ValueIfFalse], got %v", where, arg)
	}
	name, ok := a[0].(string)
	if !ok {
		return nil, fmt.Errorf("%s: the first element names a condition, got %v", where, a[0])
	}
	ok, err := s.namedCondition(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if ok {
		return s.resolve(a[1], where+"[1]")
	}
	return s.resolve(a[2], where+"[2]")
}

// namedCondition evaluates an entry of the template's Conditions section.
func (s *scope) namedCondition(name string) (bool, error) {
	if v, ok := s.conditions[name]; ok {
		return v, nil
	}
	expr, ok := s.t.conditions[name]
	if !ok {
		return false, fmt.Errorf("no condition named %q", name)
	}
	if s.evaluating[name] {
		return false, fmt.Errorf("condition %s refers to itself", name)
	}
	s.evaluating[name] = true
	defer delete(s.evaluating, name)
	v, err := s.condition(expr, "Conditions."+name)
	if err != nil {
		return false, err
	}
	s.conditions[name] = v
	return v, nil
}

// condition evaluates a condition expression: Fn::Equals, Fn::And, Fn::Or,
// Fn::Not, or {Condition: Name}.
func (s *scope) condition(expr any, where string) (bool, error) {
	// goformation's YAML reader drops the !Condition tag and leaves just the
	// name; where a condition is expected, a bare string can only be that.
	if name, ok := expr.(string); ok {
		return s.namedCondition(name)
	}
	m, ok := expr.(map[string]any)
	if !ok || len(m) != 1 {
		return false, fmt.Errorf("%s: a condition must be Fn::Equals, Fn::And, Fn::Or, Fn::Not or {Condition: Name}, got %v", where, expr)
	}
	for fn, arg := range m {
		switch fn {
		case "Condition":
			name, ok := arg.(string)
			if !ok {
				return false, fmt.Errorf("%s: Condition takes a name, got %v", where, arg)
			}
			return s.namedCondition(name)
		case "Fn::Equals":
			a, err := s.list(arg, 2, where, "[value, value]")
			if err != nil {
				return false, err
			}
			l, err1 := scalarString(a[0])
			r, err2 := scalarString(a[1])
			if err1 != nil || err2 != nil {
				return false, fmt.Errorf("%s: compares two strings, got %v", where, a)
			}
			return l == r, nil
		case "Fn::Not":
			a, ok := arg.([]any)
			if !ok || len(a) != 1 {
				return false, fmt.Errorf("%s: Fn::Not takes [condition], got %v", where, arg)
			}
			v, err := s.condition(a[0], where)
			return !v, err
		case "Fn::And", "Fn::Or":
			a, ok := arg.([]any)
			if !ok || len(a) < 2 || len(a) > 10 {
				return false, fmt.Errorf("%s: %s takes 2 to 10 conditions, got %v", where, fn, arg)
			}
			and := fn == "Fn::And"
			result := and
			for i, c := range a {
				v, err := s.condition(c, fmt.Sprintf("%s[%d]", where, i))
				if err != nil {
					return false, err
				}
				if and {
					result = result && v
				} else {
					result = result || v
				}
			}
			return result, nil
		}
		return false, fmt.Errorf("%s: %s is not a condition function", where, fn)
	}
	return false, nil
}

// scalarString turns a resolved scalar into the string CloudFormation would
// substitute; lists and objects are an error.
func scalarString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	}
	return "", fmt.Errorf("expected a string or number, got %v", v)
}

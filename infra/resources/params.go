package resources

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/awslabs/goformation/v7/cloudformation"
)

// ParameterError says why a parameter value was rejected.
type ParameterError struct {
	Name   string
	Value  string
	Reason string
}

func (e *ParameterError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("parameter %s: %s", e.Name, e.Reason)
	}
	return fmt.Sprintf("parameter %s=%q: %s", e.Name, e.Value, e.Reason)
}

// paramValue is a parameter's resolved value, or why it cannot be used.
// A parameter that cannot be resolved locally (an SSM-backed one) is an
// error only if a table or queue refers to it.
type paramValue struct {
	value any
	err   error
}

// Parameters returns the template's parameter names, sorted.
func (t *Template) Parameters() []string {
	names := make([]string, 0, len(t.parameters))
	for n := range t.parameters {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// checkParameterDeclaration catches declarations that no value could satisfy
// or that this package would misread, when the template is loaded.
func checkParameterDeclaration(name string, p cloudformation.Parameter) error {
	if p.Type == "" {
		return fmt.Errorf("parameter %s has no Type", name)
	}
	if p.AllowedPattern != nil {
		if _, err := regexp.Compile(anchored(*p.AllowedPattern)); err != nil {
			return fmt.Errorf("parameter %s: AllowedPattern %q is not a valid regular expression: %v", name, *p.AllowedPattern, err)
		}
	}
	if p.MinValue != nil && p.MaxValue != nil && *p.MinValue > *p.MaxValue {
		return fmt.Errorf("parameter %s: MinValue %v is above MaxValue %v", name, *p.MinValue, *p.MaxValue)
	}
	if p.MinLength != nil && p.MaxLength != nil && *p.MinLength > *p.MaxLength {
		return fmt.Errorf("parameter %s: MinLength %d is above MaxLength %d", name, *p.MinLength, *p.MaxLength)
	}
	return nil
}

// parameterValues checks the overrides against the template's declarations
// and returns every parameter's value. All problems are reported together.
func (t *Template) parameterValues(overrides map[string]string) (map[string]paramValue, error) {
	var errs []error
	for name, v := range overrides {
		if _, ok := t.parameters[name]; !ok {
			known := strings.Join(t.Parameters(), ", ")
			if known == "" {
				known = "none"
			}
			errs = append(errs, &ParameterError{Name: name, Value: v, Reason: "the template declares no such parameter (known: " + known + ")"})
		}
	}
	values := make(map[string]paramValue, len(t.parameters))
	for _, name := range t.Parameters() {
		p := t.parameters[name]
		raw, given := overrides[name]
		if !given {
			if p.Default == nil {
				// Only an error if a data resource refers to it: the
				// controller's subnets, say, mean nothing locally.
				values[name] = paramValue{err: &ParameterError{Name: name, Reason: "has no Default, so a value must be given (--param " + name + "=…)"}}
				continue
			}
			var err error
			if raw, err = defaultString(p.Default); err != nil {
				errs = append(errs, &ParameterError{Name: name, Reason: "Default: " + err.Error()})
				continue
			}
		}
		if isSSM(p.Type) {
			// The value names an SSM parameter; reading it is CloudFormation's job.
			values[name] = paramValue{err: fmt.Errorf("parameter %s (%s) names an SSM parameter, which is resolved only by CloudFormation", name, p.Type)}
			continue
		}
		v, err := checkParameter(name, p, raw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		values[name] = paramValue{value: v}
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return nil, fmt.Errorf("invalid template parameters (nothing was created): %w", errors.Join(errs...))
	}
	return values, nil
}

func isSSM(typ string) bool {
	return strings.HasPrefix(typ, "AWS::SSM::Parameter::")
}

// defaultString renders a Default the way CloudFormation sees it: as text.
func defaultString(v any) (string, error) {
	switch d := v.(type) {
	case string:
		return d, nil
	case float64:
		return strconv.FormatFloat(d, 'f', -1, 64), nil
	case bool:
		return strconv.FormatBool(d), nil
	case []any:
		parts := make([]string, len(d))
		for i, e := range d {
			s, err := defaultString(e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("unsupported value %v", v)
}

// checkParameter validates raw against the parameter's type and
// constraints and returns the value Ref yields: a json.Number for Number
// (so it fits integer properties), a list for list types, else the string.
func checkParameter(name string, p cloudformation.Parameter, raw string) (any, error) {
	bad := func(reason string) error {
		if p.ConstraintDescription != nil && *p.ConstraintDescription != "" {
			reason += " (" + *p.ConstraintDescription + ")"
		}
		return &ParameterError{Name: name, Value: raw, Reason: reason}
	}
	switch {
	case p.Type == "Number":
		if err := checkNumber(p, raw); err != "" {
			return nil, bad(err)
		}
		if err := checkAllowed(p, raw, true); err != "" {
			return nil, bad(err)
		}
		return json.Number(strings.TrimSpace(raw)), nil
	case p.Type == "List<Number>":
		items := splitList(raw)
		out := make([]any, len(items))
		for i, it := range items {
			if err := checkNumber(p, it); err != "" {
				return nil, bad(fmt.Sprintf("element %d: %s", i+1, err))
			}
			if err := checkAllowed(p, it, true); err != "" {
				return nil, bad(fmt.Sprintf("element %d: %s", i+1, err))
			}
			out[i] = it
		}
		return out, nil
	case p.Type == "CommaDelimitedList" || strings.HasPrefix(p.Type, "List<"):
		items := splitList(raw)
		out := make([]any, len(items))
		for i, it := range items {
			if err := checkString(p, it); err != "" {
				return nil, bad(fmt.Sprintf("element %d: %s", i+1, err))
			}
			out[i] = it
		}
		return out, nil
	case p.Type == "String" || strings.HasPrefix(p.Type, "AWS::"):
		if err := checkString(p, raw); err != "" {
			return nil, bad(err)
		}
		return raw, nil
	}
	return nil, bad(fmt.Sprintf("unknown parameter Type %q", p.Type))
}

func splitList(raw string) []string {
	if raw == "" {
		return nil
	}
	items := strings.Split(raw, ",")
	for i := range items {
		items[i] = strings.TrimSpace(items[i])
	}
	return items
}

func checkNumber(p cloudformation.Parameter, raw string) string {
	f, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return "not a number"
	}
	if p.MinValue != nil && f < *p.MinValue {
		return fmt.Sprintf("below the minimum %v", *p.MinValue)
	}
	if p.MaxValue != nil && f > *p.MaxValue {
		return fmt.Sprintf("above the maximum %v", *p.MaxValue)
	}
	return ""
}

func checkString(p cloudformation.Parameter, raw string) string {
	n := utf8.RuneCountInString(raw)
	if p.MinLength != nil && n < *p.MinLength {
		return fmt.Sprintf("shorter than the minimum length %d", *p.MinLength)
	}
	if p.MaxLength != nil && n > *p.MaxLength {
		return fmt.Sprintf("longer than the maximum length %d", *p.MaxLength)
	}
	if p.AllowedPattern != nil {
		// CloudFormation matches the whole value against the pattern.
		re := regexp.MustCompile(anchored(*p.AllowedPattern))
		if !re.MatchString(raw) {
			return fmt.Sprintf("does not match the pattern %s", *p.AllowedPattern)
		}
	}
	return checkAllowed(p, raw, false)
}

// anchored makes a pattern match whole values only, as CloudFormation's
// AllowedPattern does.
func anchored(pattern string) string {
	return "^(?:" + pattern + ")$"
}

// checkAllowed checks AllowedValues; numbers compare by value, so 5 and
// 5.0 are the same.
func checkAllowed(p cloudformation.Parameter, raw string, numeric bool) string {
	if len(p.AllowedValues) == 0 {
		return ""
	}
	allowed := make([]string, 0, len(p.AllowedValues))
	for _, a := range p.AllowedValues {
		s, err := defaultString(a)
		if err != nil {
			continue
		}
		allowed = append(allowed, s)
		if s == raw {
			return ""
		}
		if numeric {
			x, err1 := strconv.ParseFloat(s, 64)
			y, err2 := strconv.ParseFloat(strings.TrimSpace(raw), 64)
			if err1 == nil && err2 == nil && x == y {
				return ""
			}
		}
	}
	return "not one of the allowed values " + strings.Join(allowed, ", ")
}

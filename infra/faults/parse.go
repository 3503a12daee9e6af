package faults

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseRules reads rules written as one flag value: rules separated by
// ";", each a kind followed by settings separated by spaces:
//
//	rate=R    share of matching requests to hit (default 1)
//	ops=A,B   operations (default: every operation)
//	first     first attempts only
//	limit=N   at most N hits
//	delay=D   latency to add, a Go duration (latency rules only)
//
// For example "lost_answer rate=0.05 ops=PutItem,UpdateItem first;
// throttle rate=0.01; latency delay=200ms". The rules are validated as
// Options.Validate does.
func ParseRules(spec string) ([]Rule, error) {
	var rules []Rule
	for i, text := range strings.Split(spec, ";") {
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		r := Rule{Kind: Kind(fields[0]), Rate: 1}
		for _, f := range fields[1:] {
			name, value, _ := strings.Cut(f, "=")
			var err error
			switch name {
			case "rate":
				r.Rate, err = strconv.ParseFloat(value, 64)
			case "ops":
				r.Operations = strings.Split(value, ",")
			case "first":
				r.FirstAttemptOnly = true
			case "limit":
				r.Limit, err = strconv.Atoi(value)
			case "delay":
				r.Delay, err = time.ParseDuration(value)
			default:
				return nil, fmt.Errorf("faults: rule %d %q: unknown setting %q: use rate=, ops=, first, limit= or delay=", i+1, strings.TrimSpace(text), f)
			}
			if err != nil {
				return nil, fmt.Errorf("faults: rule %d %q: setting %q: %w", i+1, strings.TrimSpace(text), f, err)
			}
		}
		rules = append(rules, r)
	}
	if err := (Options{Rules: rules}).Validate(); err != nil {
		return nil, err
	}
	return rules, nil
}

// FormatRules writes rules as ParseRules reads them, so they can be handed
// to another process as one flag value.
func FormatRules(rules []Rule) string {
	parts := make([]string, 0, len(rules))
	for _, r := range rules {
		f := []string{string(r.Kind), "rate=" + strconv.FormatFloat(r.Rate, 'g', -1, 64)}
		if len(r.Operations) > 0 {
			f = append(f, "ops="+strings.Join(r.Operations, ","))
		}
		if r.FirstAttemptOnly {
			f = append(f, "first")
		}
		if r.Limit > 0 {
			f = append(f, "limit="+strconv.Itoa(r.Limit))
		}
		if r.Delay > 0 {
			f = append(f, "delay="+r.Delay.String())
		}
		parts = append(parts, strings.Join(f, " "))
	}
	return strings.Join(parts, "; ")
}

package faults_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/infra/faults"
)

func TestParseRules(t *testing.T) {
	got, err := faults.ParseRules("lost_answer rate=0.05 ops=PutItem,UpdateItem first; throttle rate=0.01 limit=3;; latency delay=200ms")
	if err != nil {
		t.Fatal(err)
	}
	want := []faults.Rule{
		{Kind: faults.LostAnswer, Rate: 0.05, Operations: []string{"PutItem", "UpdateItem"}, FirstAttemptOnly: true},
		{Kind: faults.Throttle, Rate: 0.01, Limit: 3},
		{Kind: faults.Latency, Rate: 1, Delay: 200 * time.Millisecond},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseRules:\n got  %+v\n want %+v", got, want)
	}
	if rules, err := faults.ParseRules(""); err != nil || len(rules) != 0 {
		t.Fatalf("ParseRules(\"\") = %v, %v; want no rules", rules, err)
	}
	for spec, want := range map[string]string{
		"throttle often":            `unknown setting "often"`,
		"throttle rate=lots":        `setting "rate=lots"`,
		"latency delay=soon":        `setting "delay=soon"`,
		"throttle; drop rate=1":     `rule 2: kind "drop" is unknown`,
		"server_error rate=2":       "rate 2 is not in (0, 1]",
		"lost_answer ops=PutItem,,": "operation name is empty",
	} {
		if _, err := faults.ParseRules(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRules(%q) = %v, want an error containing %q", spec, err, want)
		}
	}
}

func TestFormatRulesIsReadBack(t *testing.T) {
	rules := []faults.Rule{
		{Kind: faults.Latency, Rate: 0.125, Delay: 40 * time.Millisecond},
		{Kind: faults.LostAnswer, Rate: 0.1, Operations: []string{"PutItem", "TransactWriteItems"}, FirstAttemptOnly: true, Limit: 7},
		{Kind: faults.Throttle, Rate: 1},
	}
	text := faults.FormatRules(rules)
	got, err := faults.ParseRules(text)
	if err != nil {
		t.Fatalf("ParseRules(%q): %v", text, err)
	}
	if !reflect.DeepEqual(got, rules) {
		t.Fatalf("read back %q as %+v, want %+v", text, got, rules)
	}
}

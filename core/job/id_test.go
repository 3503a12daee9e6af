package job

import (
	"regexp"
	"strings"
	"testing"
)

// idPattern is the rule validID checks by hand.
var idPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

func TestValidIDMatchesItsPattern(t *testing.T) {
	for _, id := range []string{"", "a", "orders-enrich", "A.b_c-9", "-a", ".a", "_a", "a b", "a\n", "é", "a/b",
		strings.Repeat("x", 128), strings.Repeat("x", 129)} {
		if got, want := validID(id), idPattern.MatchString(id); got != want {
			t.Errorf("validID(%q) = %v, want %v", id, got, want)
		}
	}
}

func FuzzValidIDMatchesItsPattern(f *testing.F) {
	f.Add("orders-enrich")
	f.Add("-x")
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := validID(id), idPattern.MatchString(id); got != want {
			t.Fatalf("validID(%q) = %v, want %v", id, got, want)
		}
	})
}

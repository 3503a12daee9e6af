package schedule

import (
	"strings"
	"testing"
	"time"
)

func TestExpressionsRoundUpAndParseBack(t *testing.T) {
	at := time.Date(2026, 11, 29, 23, 59, 59, 1, time.FixedZone("x", 3600))
	expr := Expression(at)
	if expr != "at(2026-11-29T23:00:00)" {
		t.Errorf("Expression = %s, want UTC rounded up to the second", expr)
	}
	back, err := ParseExpression(expr)
	if err != nil || back.Before(at) {
		t.Errorf("ParseExpression = %v, %v", back, err)
	}
	for _, bad := range []string{"rate(5 minutes)", "at(tomorrow)", "at(2026-11-29T23:00:00"} {
		if _, err := ParseExpression(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestSettingsNameWhatIsMissing(t *testing.T) {
	err := Settings{Group: "g", MaxRetries: 200, MaxEventAge: time.Second}.Validate()
	for _, want := range []string{"WEIR_TTL_FUNCTION_ARN", "WEIR_SCHEDULER_ROLE_ARN", "WEIR_SCHEDULE_DLQ_ARN", "0 to 185", "1m to 24h"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

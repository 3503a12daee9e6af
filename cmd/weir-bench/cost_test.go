package main

import (
	"testing"

	"github.com/weirstream/weir/infra/accounting"
)

// The controller's fixed cost includes the urgent queue's idle long polls
// (one per 20 s) and stays within the $1.20 target.
func TestControllerMonthCountsTheUrgentQueue(t *testing.T) {
	reqs, usd := controllerMonth(accounting.USEast1)
	if got := reqs["sqs.ReceiveMessage urgent idle"]; got != 129600 {
		t.Errorf("urgent queue receives a month = %.0f; want 129600 (one per 20 s)", got)
	}
	if usd > 1.20 {
		t.Errorf("controller-month $%.2f; the target is at most $1.20", usd)
	}
}

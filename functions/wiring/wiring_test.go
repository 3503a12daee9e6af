package wiring

import (
	"strings"
	"testing"
)

// Missing settings are all named at once, with where to find them, before
// any AWS call.
func TestMissingSettingsAreNamedTogether(t *testing.T) {
	_, _, err := Service(t.Context(), Env{ScheduleGroup: "g"}, nil)
	if err == nil {
		t.Fatal("no error for missing settings")
	}
	for _, want := range []string{"WEIR_JOBS_TABLE", "WEIR_TTL_FUNCTION_ARN", "WEIR_SCHEDULER_ROLE_ARN", "WEIR_SCHEDULE_DLQ_ARN", "stack output"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "WEIR_SCHEDULE_GROUP") {
		t.Errorf("error %q names a setting that was given", err)
	}
}

func TestLocalEnvFillsOnlyTheScheduleTarget(t *testing.T) {
	vars := map[string]string{"WEIR_JOBS_TABLE": "t", "WEIR_SCHEDULE_GROUP": "g", "WEIR_SCHEDULER_ROLE_ARN": "arn:role"}
	env := LocalEnv(func(k string) string { return vars[k] })
	if env.JobsTable != "t" || env.ScheduleGroup != "g" || env.SchedulerRoleARN != "arn:role" {
		t.Fatalf("set variables not kept: %+v", env)
	}
	if env.TTLFunctionARN == "" || env.ScheduleDLQARN != "" {
		t.Fatalf("local env = %+v, want a placeholder TTL target and no DLQ", env)
	}
	if got := EnvFrom(func(k string) string { return vars[k] }); got.TTLFunctionARN != "" {
		t.Fatalf("EnvFrom invented a TTL target: %+v", got)
	}
}

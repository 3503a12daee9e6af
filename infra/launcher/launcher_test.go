package launcher_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/infra/launcher"
)

func TestWorkerEnvAndPassThrough(t *testing.T) {
	req := fleet.Request{JobID: "clicks", RunID: 7, Workers: []string{"w-0"}, SlotsPerWorker: 2, Program: "p q"}
	want := []string{"WEIR_JOB_ID=clicks", "WEIR_RUN_ID=7", "WEIR_WORKER_ID=w-0", "WEIR_WORKER_SLOTS=2", "WEIR_PROGRAM=p q"}
	if got := launcher.WorkerEnv(req, "w-0"); !slices.Equal(got, want) {
		t.Errorf("WorkerEnv = %q, want %q", got, want)
	}
	in := []string{"AWS_REGION=eu-west-1", "WEIR_JOBS_TABLE=j", "WEIR_WORKER_QUEUE_URL=q", "WEIR_WORKER_URGENT_QUEUE_URL=u", "WEIR_LEASE_TABLE=l", "HOME=/root", "PATH=/bin", "AWS_=x", "broken"}
	if got, want := launcher.PassThrough(in), []string{"AWS_REGION=eu-west-1", "WEIR_JOBS_TABLE=j", "WEIR_WORKER_QUEUE_URL=q", "WEIR_WORKER_URGENT_QUEUE_URL=u", "AWS_=x"}; !slices.Equal(got, want) {
		t.Errorf("PassThrough = %q, want %q", got, want)
	}
}

func TestCheckRequestNamesEveryProblem(t *testing.T) {
	err := launcher.CheckRequest(fleet.Request{JobID: "clicks", Workers: []string{"w-0", "w-0"}})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"run id 0", "unique", "slots per worker 0", "no program"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if err := launcher.CheckRequest(fleet.Request{JobID: "clicks", RunID: 1, Workers: []string{"w-0"}, SlotsPerWorker: 1, Program: "p"}); err != nil {
		t.Errorf("a good request: %v", err)
	}
	if launcher.CheckStop("clicks", -1) == nil || launcher.CheckStop("", 0) == nil || launcher.CheckStop("clicks", 0) != nil {
		t.Error("CheckStop judged wrongly")
	}
}

package worker_test

import (
	"strings"
	"testing"

	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/infra/launcher"
	"github.com/weirstream/weir/worker"
)

// TestIdentityFromALaunchersEnvironment: a worker reads the identity the
// launchers put in its environment, slots included.
func TestIdentityFromALaunchersEnvironment(t *testing.T) {
	req := fleet.Request{JobID: "clicks", RunID: 7, Workers: []string{"w-0"}, SlotsPerWorker: 3, Program: "p"}
	env := map[string]string{
		launcher.EnvWorkerQueueURL: "https://sqs.us-east-1.amazonaws.com/123456789012/weir-Workers",
		launcher.EnvJobsTable:      "weir-Jobs",
	}
	for _, kv := range launcher.WorkerEnv(req, "w-0") {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	id, err := worker.IdentityFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if id.JobID != req.JobID || id.RunID != req.RunID || id.WorkerID != "w-0" || id.Slots != req.SlotsPerWorker {
		t.Errorf("identity %+v from the launcher's environment %v, want job %s run %d worker w-0 with %d slots",
			id, env, req.JobID, req.RunID, req.SlotsPerWorker)
	}
}

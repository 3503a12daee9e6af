// Package launcher holds what weir's worker launchers share: the
// environment that tells a worker who it is, and the checks every launcher
// makes on a fleet.Request before acting on it.
//
// The launchers themselves live in the subpackages: process (local
// processes), ecs (ECS tasks) and external (workers started by someone
// else).
package launcher

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/core/job"
)

// The variables that give a worker its identity. A worker reads them at
// start-up; every launcher sets them (the external one documents them).
const (
	EnvJobID    = "WEIR_JOB_ID"
	EnvRunID    = "WEIR_RUN_ID"
	EnvWorkerID = "WEIR_WORKER_ID"
	EnvSlots    = "WEIR_WORKER_SLOTS"
	EnvProgram  = "WEIR_PROGRAM"
)

// The stack's variables a worker needs besides its identity: where to send
// its messages and where to read its commands. They have the names
// weir-resources prints.
const (
	EnvWorkerQueueURL = "WEIR_WORKER_QUEUE_URL"
	EnvJobsTable      = "WEIR_JOBS_TABLE"
	// EnvWorkerUrgentQueueURL is optional: where workers send the news the
	// controller must act on at once.
	EnvWorkerUrgentQueueURL = "WEIR_WORKER_URGENT_QUEUE_URL"
)

// WorkerEnv returns the identity variables of one worker of req, as
// NAME=value strings in a fixed order.
func WorkerEnv(req fleet.Request, workerID string) []string {
	return []string{
		EnvJobID + "=" + string(req.JobID),
		EnvRunID + "=" + strconv.FormatInt(req.RunID, 10),
		EnvWorkerID + "=" + workerID,
		EnvSlots + "=" + strconv.Itoa(req.SlotsPerWorker),
		EnvProgram + "=" + req.Program,
	}
}

// PassThrough picks from environ (os.Environ's form) the variables a
// worker started beside the controller inherits from it: the stack's
// queues and table, and the AWS SDK's settings (AWS_*, such as the region,
// credentials and AWS_ENDPOINT_URL for the emulator).
func PassThrough(environ []string) []string {
	var out []string
	for _, kv := range environ {
		name, _, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if name == EnvWorkerQueueURL || name == EnvWorkerUrgentQueueURL || name == EnvJobsTable || strings.HasPrefix(name, "AWS_") {
			out = append(out, kv)
		}
	}
	return out
}

// CheckRequest says what makes req impossible to launch: an invalid job
// id, a run id below 1, no workers, duplicate or empty worker ids, fewer
// than one slot, or no program.
func CheckRequest(req fleet.Request) error {
	if err := req.JobID.Validate(); err != nil {
		return err
	}
	var problems []string
	if req.RunID < 1 {
		problems = append(problems, fmt.Sprintf("run id %d must be at least 1", req.RunID))
	}
	if len(req.Workers) == 0 {
		problems = append(problems, "the request names no workers")
	}
	seen := make(map[string]bool, len(req.Workers))
	for _, w := range req.Workers {
		if w == "" || seen[w] {
			problems = append(problems, fmt.Sprintf("worker ids must be unique and not empty (got %q)", req.Workers))
			break
		}
		seen[w] = true
	}
	if req.SlotsPerWorker < 1 {
		problems = append(problems, fmt.Sprintf("slots per worker %d must be at least 1", req.SlotsPerWorker))
	}
	if req.Program == "" {
		problems = append(problems, "the request names no program")
	}
	if len(problems) > 0 {
		return fmt.Errorf("cannot launch job %s run %d: %s", req.JobID, req.RunID, strings.Join(problems, "; "))
	}
	return nil
}

// CheckStop says what makes a Stop of id up to runID impossible.
func CheckStop(id job.ID, runID int64) error {
	if err := id.Validate(); err != nil {
		return err
	}
	if runID < 0 {
		return fmt.Errorf("job %s: run id %d is negative (0 means every run)", id, runID)
	}
	return nil
}

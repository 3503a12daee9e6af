package worker

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
)

// The environment variables a launcher sets for a worker. Queue URL and
// jobs table have the names the stack's outputs are given everywhere else
// (weir-resources prints them).
const (
	// EnvJobID is the job the worker belongs to.
	EnvJobID = "WEIR_JOB_ID"
	// EnvRunID is the run (generation) the worker was started for, 1 or more.
	EnvRunID = "WEIR_RUN_ID"
	// EnvWorkerID is the worker's id within its run.
	EnvWorkerID = "WEIR_WORKER_ID"
	// EnvQueueURL is the URL of the worker queue envelopes go to.
	EnvQueueURL = "WEIR_WORKER_QUEUE_URL"
	// EnvUrgentQueueURL is optional: the URL of the urgent worker queue,
	// where envelopes with news the controller must act on at once go (a
	// subtask newly failed, a source newly finished). Unset: every envelope
	// goes to EnvQueueURL.
	EnvUrgentQueueURL = "WEIR_WORKER_URGENT_QUEUE_URL"
	// EnvJobsTable is the DynamoDB table that holds the command record.
	EnvJobsTable = "WEIR_JOBS_TABLE"
	// EnvSlots is optional: the task slots the worker offers (default 1).
	EnvSlots = "WEIR_WORKER_SLOTS"
	// EnvHeartbeatInterval is optional: the heartbeat interval as a Go
	// duration (default protocol.DefaultHeartbeatInterval).
	EnvHeartbeatInterval = "WEIR_HEARTBEAT_INTERVAL"
)

// Identity is who a worker is and where it reports: what its launcher put
// in its environment.
type Identity struct {
	JobID     job.ID
	RunID     int64
	WorkerID  string
	QueueURL  string
	JobsTable string
	// UrgentQueueURL, if set, receives the envelopes that carry urgent
	// news (see EnvUrgentQueueURL).
	UrgentQueueURL string
	// Slots is the number of task slots the worker offers (default 1).
	Slots int
	// HeartbeatInterval is how often the worker sends an envelope when
	// nothing changes (default protocol.DefaultHeartbeatInterval). It must
	// stay well below the controller's heartbeat time-out.
	HeartbeatInterval time.Duration
}

// IdentityFromEnv reads the identity from the environment through lookup
// (os.LookupEnv in a program) and validates it. The error names every
// variable that is missing or wrong and what to set it to.
func IdentityFromEnv(lookup func(string) (string, bool)) (Identity, error) {
	var problems []error
	get := func(name, what string) string {
		v, ok := lookup(name)
		v = strings.TrimSpace(v)
		if !ok || v == "" {
			problems = append(problems, fmt.Errorf("%s is not set: set it to %s", name, what))
		}
		return v
	}
	id := Identity{
		JobID:     job.ID(get(EnvJobID, "the id of the job the worker belongs to")),
		WorkerID:  get(EnvWorkerID, "the worker id the controller asked the launcher for"),
		QueueURL:  get(EnvQueueURL, "the worker queue's URL (stack output WorkerQueueUrl)"),
		JobsTable: get(EnvJobsTable, "the jobs table's name (stack output JobsTableName)"),
	}
	if v, ok := lookup(EnvUrgentQueueURL); ok {
		id.UrgentQueueURL = strings.TrimSpace(v)
	}
	if v := get(EnvRunID, "the run id the worker was started for (a whole number, 1 or more)"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s is %q: set it to the run id, a whole number, 1 or more", EnvRunID, v))
		}
		id.RunID = n
	}
	if v, ok := lookup(EnvSlots); ok && strings.TrimSpace(v) != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			problems = append(problems, fmt.Errorf("%s is %q: set it to a whole number of task slots, 1 to %d, or leave it unset for 1", EnvSlots, v, protocol.MaxSlots))
		}
		id.Slots = n
	}
	if v, ok := lookup(EnvHeartbeatInterval); ok && strings.TrimSpace(v) != "" {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			problems = append(problems, fmt.Errorf("%s is %q: set it to a duration such as 20s, or leave it unset for %s", EnvHeartbeatInterval, v, protocol.DefaultHeartbeatInterval))
		}
		id.HeartbeatInterval = d
	}
	if len(problems) > 0 {
		// Values that did not parse are reported above; Validate would only
		// repeat them.
		return Identity{}, fmt.Errorf("worker identity from the environment: %w", errors.Join(problems...))
	}
	if err := id.Validate(); err != nil {
		return Identity{}, err
	}
	return id.withDefaults(), nil
}

func (id Identity) withDefaults() Identity {
	if id.Slots == 0 {
		id.Slots = 1
	}
	if id.HeartbeatInterval == 0 {
		id.HeartbeatInterval = protocol.DefaultHeartbeatInterval
	}
	return id
}

// Validate names every field of the identity that cannot work (zero Slots
// and HeartbeatInterval mean their defaults).
func (id Identity) Validate() error {
	var problems []error
	if err := id.JobID.Validate(); err != nil {
		problems = append(problems, fmt.Errorf("%s: %w", EnvJobID, err))
	}
	if id.RunID < 1 {
		problems = append(problems, fmt.Errorf("%s is %d: set it to the run id the worker was started for, 1 or more", EnvRunID, id.RunID))
	}
	if id.WorkerID == "" || len(id.WorkerID) > protocol.MaxNameBytes {
		problems = append(problems, fmt.Errorf("%s must be 1 to %d bytes (got %d)", EnvWorkerID, protocol.MaxNameBytes, len(id.WorkerID)))
	}
	if !strings.HasPrefix(id.QueueURL, "http://") && !strings.HasPrefix(id.QueueURL, "https://") {
		problems = append(problems, fmt.Errorf("%s is %q: set it to the worker queue's URL, https://sqs.<region>.amazonaws.com/<account>/<queue>", EnvQueueURL, id.QueueURL))
	}
	if id.UrgentQueueURL != "" {
		if !strings.HasPrefix(id.UrgentQueueURL, "http://") && !strings.HasPrefix(id.UrgentQueueURL, "https://") {
			problems = append(problems, fmt.Errorf("%s is %q: set it to the urgent worker queue's URL (stack output WorkerUrgentQueueUrl), or leave it unset to send everything to %s", EnvUrgentQueueURL, id.UrgentQueueURL, EnvQueueURL))
		} else if id.UrgentQueueURL == id.QueueURL {
			problems = append(problems, fmt.Errorf("%s is the worker queue's URL: set it to the urgent queue's (stack output WorkerUrgentQueueUrl), or leave it unset", EnvUrgentQueueURL))
		}
	}
	if id.JobsTable == "" {
		problems = append(problems, fmt.Errorf("%s is empty: set it to the jobs table's name", EnvJobsTable))
	}
	if id.Slots < 0 || id.Slots > protocol.MaxSlots {
		problems = append(problems, fmt.Errorf("%s is %d: set it to 1 to %d", EnvSlots, id.Slots, protocol.MaxSlots))
	}
	if id.HeartbeatInterval < 0 || (id.HeartbeatInterval > 0 && id.HeartbeatInterval < time.Second) {
		problems = append(problems, fmt.Errorf("%s is %s: set it to 1s or more (the default is %s)", EnvHeartbeatInterval, id.HeartbeatInterval, protocol.DefaultHeartbeatInterval))
	}
	if len(problems) > 0 {
		return fmt.Errorf("worker identity: %w", errors.Join(problems...))
	}
	return nil
}

// Env returns the identity as environment variables, for launchers and
// tests that start workers.
func (id Identity) Env() map[string]string {
	env := map[string]string{
		EnvJobID:     string(id.JobID),
		EnvRunID:     strconv.FormatInt(id.RunID, 10),
		EnvWorkerID:  id.WorkerID,
		EnvQueueURL:  id.QueueURL,
		EnvJobsTable: id.JobsTable,
	}
	if id.UrgentQueueURL != "" {
		env[EnvUrgentQueueURL] = id.UrgentQueueURL
	}
	if id.Slots != 0 {
		env[EnvSlots] = strconv.Itoa(id.Slots)
	}
	if id.HeartbeatInterval != 0 {
		env[EnvHeartbeatInterval] = id.HeartbeatInterval.String()
	}
	return env
}

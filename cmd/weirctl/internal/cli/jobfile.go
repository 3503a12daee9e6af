package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/weirstream/weir/cmd/weirctl/internal/client"
	"github.com/weirstream/weir/core/job"
)

// jobFile is what a job file holds: the fields of POST /jobs, in YAML
// (or JSON, which YAML reads too).
type jobFile struct {
	ID                 string         `yaml:"id"`
	Spec               specFile       `yaml:"spec"`
	Stop               string         `yaml:"stop"`
	Parallelism        map[string]int `yaml:"parallelism"`
	CheckpointInterval string         `yaml:"checkpoint_interval"`
	TTL                string         `yaml:"ttl"`
	RestartPolicy      *policyFile    `yaml:"restart_policy"`
}

type specFile struct {
	Operators      []operatorFile `yaml:"operators"`
	SlotsPerWorker int            `yaml:"slots_per_worker"`
	Program        string         `yaml:"program"`
}

type operatorFile struct {
	ID          string `yaml:"id"`
	Parallelism int    `yaml:"parallelism"`
	Source      bool   `yaml:"source"`
	Committing  bool   `yaml:"committing"`
}

type policyFile struct {
	AllowedRestarts *int    `yaml:"allowed_restarts"`
	HealthyDuration *string `yaml:"healthy_duration"`
}

// Limits the API enforces that core/job does not (api/openapi.yaml);
// checked here so a bad file is refused before any request.
const (
	maxCheckpointInterval = 24 * time.Hour
	maxTTL                = 366 * 24 * time.Hour
	maxHealthyDuration    = 7 * 24 * time.Hour
	maxAllowedRestarts    = 1_000_000
	maxOperators          = 256
	maxProgram            = 4096
	maxOperatorID         = 128
	maxSlots              = 4096
	maxFileBytes          = 64 << 10
)

// unknownField rewords the YAML decoder's message for a misspelt field,
// which names a Go type the reader has never seen.
var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

// readJobFile reads and checks a job file ("-" is standard input) and
// returns the request that creates it. Every mistake it finds is named.
func readJobFile(path string, stdin io.Reader) (client.CreateJob, error) {
	var raw []byte
	var err error
	if path == "-" {
		raw, err = io.ReadAll(io.LimitReader(stdin, maxFileBytes+1))
		path = "standard input"
	} else {
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return client.CreateJob{}, fmt.Errorf("cannot read the job file: %w", err)
	}
	if len(raw) > maxFileBytes {
		return client.CreateJob{}, fmt.Errorf("%s is over %d KiB: a job file holds one job's spec, not data", path, maxFileBytes>>10)
	}
	return parseJobFile(path, raw)
}

func parseJobFile(name string, raw []byte) (client.CreateJob, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return client.CreateJob{}, fmt.Errorf("%s is empty: write a job as in cmd/weirctl/examples/demo-job.yaml", name)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var f jobFile
	if err := dec.Decode(&f); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = unknownField.ReplaceAllString(msg, `unknown field "$1"`)
		return client.CreateJob{}, fmt.Errorf("%s is not a job file: %s (see cmd/weirctl/examples/demo-job.yaml)", name, msg)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return client.CreateJob{}, fmt.Errorf("%s holds more than one YAML document: put one job in each file", name)
	}
	in, problems := f.request()
	if len(problems) > 0 {
		return client.CreateJob{}, fmt.Errorf("%s is not a valid job:\n  - %s", name, strings.Join(problems, "\n  - "))
	}
	return in, nil
}

// request turns the file into POST /jobs' body and lists its problems.
func (f jobFile) request() (client.CreateJob, []string) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	cfg := job.Config{JobID: job.ID(f.ID), Stop: job.StopMode(f.Stop), Parallelism: f.Parallelism}
	in := client.CreateJob{ID: f.ID, Stop: f.Stop, Parallelism: f.Parallelism}
	if f.ID == "" {
		add("id is missing: name the job, e.g. id: clicks-per-minute")
	}
	in.Spec.SlotsPerWorker, in.Spec.Program = f.Spec.SlotsPerWorker, f.Spec.Program
	cfg.Spec.SlotsPerWorker, cfg.Spec.Program = f.Spec.SlotsPerWorker, f.Spec.Program
	for _, op := range f.Spec.Operators {
		in.Spec.Operators = append(in.Spec.Operators, client.Operator(op))
		cfg.Spec.Operators = append(cfg.Spec.Operators, job.Operator(op))
	}
	if n := len(f.Spec.Operators); n > maxOperators {
		add("spec.operators has %d operators: at most %d", n, maxOperators)
	}
	for i, op := range f.Spec.Operators {
		if len(op.ID) > maxOperatorID {
			add("spec.operators[%d].id is %d characters long: at most %d", i, len(op.ID), maxOperatorID)
		}
	}
	if f.Spec.SlotsPerWorker > maxSlots {
		add("spec.slots_per_worker is %d: at most %d", f.Spec.SlotsPerWorker, maxSlots)
	}
	if len(f.Spec.Program) > maxProgram {
		add("spec.program is %d characters long: at most %d", len(f.Spec.Program), maxProgram)
	}
	if f.CheckpointInterval != "" {
		d, err := parseDuration("checkpoint_interval", f.CheckpointInterval, job.MinCheckpointInterval, maxCheckpointInterval)
		if err != nil {
			add("%v", err)
		}
		cfg.CheckpointInterval, in.CheckpointInterval = d, d.String()
	}
	if f.TTL != "" {
		d, err := parseDuration("ttl", f.TTL, 0, maxTTL)
		if err != nil {
			add("%v", err)
		}
		cfg.TTL = d
		if d > 0 {
			in.TTL = d.String()
		}
	}
	if p := f.RestartPolicy; p != nil {
		in.RestartPolicy = &client.PolicyChange{AllowedRestarts: p.AllowedRestarts}
		cfg.RestartPolicy = job.DefaultRestartPolicy()
		if p.AllowedRestarts != nil {
			if n := *p.AllowedRestarts; n < -1 || n > maxAllowedRestarts {
				add("restart_policy.allowed_restarts is %d: use -1 for unlimited or 0 to %d", n, maxAllowedRestarts)
			}
			cfg.RestartPolicy.AllowedRestarts = *p.AllowedRestarts
		}
		if p.HealthyDuration != nil {
			d, err := parseDuration("restart_policy.healthy_duration", *p.HealthyDuration, 0, maxHealthyDuration)
			if err != nil {
				add("%v", err)
			}
			s := d.String()
			in.RestartPolicy.HealthyDuration = &s
			cfg.RestartPolicy.HealthyDuration = d
		}
	}
	// core/job holds the rules every job obeys; it names the first broken one.
	if err := cfg.WithDefaults().Validate(); err != nil && len(problems) == 0 {
		add("%v", err)
	}
	return in, problems
}

// parseDuration reads a duration field written as people write them
// ("10s", "5m", "1h30m") and checks its range.
func parseDuration(field, s string, minD, maxD time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a duration: write it like \"10s\", \"5m\" or \"1h30m\"", field, s)
	}
	if d < minD || d > maxD {
		return 0, fmt.Errorf("%s %s is out of range: use %s to %s", field, typeable(d), typeable(minD), typeable(maxD))
	}
	return d, nil
}

// typeable writes d as it can be typed back: "24h", "1m30s", "8784h (366
// days)".
func typeable(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if d >= 48*time.Hour && d%(24*time.Hour) == 0 {
		s += fmt.Sprintf(" (%d days)", d/(24*time.Hour))
	}
	return s
}

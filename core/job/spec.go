package job

import "fmt"

// ID names a job. It is chosen by the operator and is stable for the job's life.
type ID string

// Validate reports whether id is usable as a job name: 1 to 128 of
// [a-zA-Z0-9_.-], starting with a letter or digit. (Checked by hand, not by
// a regular expression: every worker message's job id is checked.)
func (id ID) Validate() error {
	if !validID(string(id)) {
		return fmt.Errorf("job id %q is invalid: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", string(id))
	}
	return nil
}

func validID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// Operator is one node of the pipeline graph.
type Operator struct {
	ID          string `json:"id"`
	Parallelism int    `json:"parallelism"`
	// Source operators read from outside the pipeline; when every source
	// subtask has finished the job moves to Finishing.
	Source bool `json:"source,omitempty"`
	// Committing marks a two-phase committing sink: a checkpoint becomes ready
	// only after each of its subtasks acknowledged the commit.
	Committing bool `json:"committing,omitempty"`
}

// Spec describes the pipeline a job runs. It is fixed when the job is
// created; only parallelism can be overridden later through Config.
type Spec struct {
	Operators      []Operator `json:"operators"`
	SlotsPerWorker int        `json:"slots_per_worker"`
	// Program is handed to workers unchanged (an image, an artifact URI, a
	// query): weir never interprets it.
	Program string `json:"program"`
}

// MaxParallelism bounds one operator's parallelism; it keeps a job's task
// layout and its checkpoint bookkeeping within one DynamoDB item.
const MaxParallelism = 4096

// Validate checks the spec for the mistakes an operator can make.
func (s Spec) Validate() error {
	if len(s.Operators) == 0 {
		return fmt.Errorf("spec.operators is empty: a job needs at least one operator")
	}
	if s.SlotsPerWorker < 1 {
		return fmt.Errorf("spec.slots_per_worker is %d: it must be at least 1", s.SlotsPerWorker)
	}
	if s.Program == "" {
		return fmt.Errorf("spec.program is empty: name the program the workers run")
	}
	seen := make(map[string]bool, len(s.Operators))
	sources := 0
	for i, op := range s.Operators {
		if op.ID == "" {
			return fmt.Errorf("spec.operators[%d].id is empty: every operator needs an id", i)
		}
		if seen[op.ID] {
			return fmt.Errorf("spec.operators[%d].id %q is repeated: operator ids must be unique", i, op.ID)
		}
		seen[op.ID] = true
		if err := validParallelism(op.Parallelism); err != nil {
			return fmt.Errorf("spec.operators[%d] (%s): %w", i, op.ID, err)
		}
		if op.Source {
			sources++
		}
	}
	if sources == 0 {
		return fmt.Errorf("spec.operators has no source: mark at least one operator with \"source\": true")
	}
	return nil
}

func validParallelism(p int) error {
	if p < 1 || p > MaxParallelism {
		return fmt.Errorf("parallelism %d is out of range: use 1 to %d", p, MaxParallelism)
	}
	return nil
}

// Operator returns the operator with the given id.
func (s Spec) Operator(id string) (Operator, bool) {
	for _, op := range s.Operators {
		if op.ID == id {
			return op, true
		}
	}
	return Operator{}, false
}

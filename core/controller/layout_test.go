package controller

import (
	"maps"
	"slices"
	"testing"

	"github.com/weirstream/weir/core/job"
)

func TestNewLayout(t *testing.T) {
	cfg := job.Config{
		JobID: testJob,
		Spec: job.Spec{
			Operators: []job.Operator{
				{ID: "src", Parallelism: 3, Source: true},
				{ID: "agg", Parallelism: 2},
				{ID: "sink", Parallelism: 1, Committing: true},
			},
			SlotsPerWorker: 2,
			Program:        "p",
		},
		// The override makes agg the widest operator: 5 subtasks need 3
		// workers of 2 slots.
		Parallelism: map[string]int{"agg": 5},
	}
	l := NewLayout(cfg)

	wantOps := []OperatorLayout{
		{ID: "src", Parallelism: 3, Source: true},
		{ID: "agg", Parallelism: 5},
		{ID: "sink", Parallelism: 1, Committing: true},
	}
	if !slices.Equal(l.Operators, wantOps) {
		t.Errorf("Operators = %+v, want %+v", l.Operators, wantOps)
	}
	if want := []string{"w-0", "w-1", "w-2"}; !slices.Equal(l.Workers, want) {
		t.Errorf("Workers = %v, want %v", l.Workers, want)
	}
	if l.Subtasks() != 9 {
		t.Errorf("Subtasks = %d, want 9", l.Subtasks())
	}
	if want := map[string]int{"src": 3, "agg": 5, "sink": 1}; !maps.Equal(l.Parallelism(), want) {
		t.Errorf("Parallelism = %v, want %v", l.Parallelism(), want)
	}
	if len(l.Assignments) != 9 {
		t.Fatalf("%d assignments, want 9", len(l.Assignments))
	}
	perWorker := map[string]map[string]int{}
	for _, a := range l.Assignments {
		if want := l.Workers[a.Subtask/2]; a.WorkerID != want {
			t.Errorf("%s[%d] on %s, want %s", a.OperatorID, a.Subtask, a.WorkerID, want)
		}
		if perWorker[a.WorkerID] == nil {
			perWorker[a.WorkerID] = map[string]int{}
		}
		perWorker[a.WorkerID][a.OperatorID]++
	}
	// A slot runs one subtask of each operator: no worker holds more than
	// SlotsPerWorker subtasks of one operator.
	for w, ops := range perWorker {
		for op, n := range ops {
			if n > 2 {
				t.Errorf("%s runs %d subtasks of %s, more than its 2 slots", w, n, op)
			}
		}
	}
}

func TestNewLayoutSurvivesAnInvalidSpec(t *testing.T) {
	l := NewLayout(job.Config{Spec: job.Spec{Operators: []job.Operator{{ID: "a", Parallelism: 3}}}})
	if len(l.Workers) != 3 || l.Subtasks() != 3 {
		t.Errorf("slots 0 should count as 1: %d workers, %d subtasks", len(l.Workers), l.Subtasks())
	}
	if l := NewLayout(job.Config{}); len(l.Workers) != 0 || l.Subtasks() != 0 {
		t.Errorf("an empty spec gave %d workers", len(l.Workers))
	}
}

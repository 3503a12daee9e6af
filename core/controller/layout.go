package controller

import (
	"strconv"

	"github.com/weirstream/weir/core/job"
)

// OperatorLayout is one operator as a run lays it out.
type OperatorLayout struct {
	ID          string
	Parallelism int
	Source      bool
	Committing  bool
}

// Layout is where a run's subtasks go: which operators with which
// parallelism, which workers, and which subtask runs on which worker.
type Layout struct {
	Operators   []OperatorLayout
	Workers     []string
	Assignments []job.TaskAssignment
}

// NewLayout lays a job out with its effective parallelism. Workers have
// Spec.SlotsPerWorker slots and, as in Arroyo, a slot runs one subtask of
// every operator: subtask i of each operator goes to worker i/SlotsPerWorker,
// so the job needs ceil(max parallelism / SlotsPerWorker) workers.
func NewLayout(cfg job.Config) Layout {
	slots := max(cfg.Spec.SlotsPerWorker, 1)
	var l Layout
	maxPar, total := 0, 0
	for _, op := range cfg.Spec.Operators {
		p := max(cfg.EffectiveParallelism(op), 0)
		l.Operators = append(l.Operators, OperatorLayout{
			ID: op.ID, Parallelism: p, Source: op.Source, Committing: op.Committing,
		})
		maxPar = max(maxPar, p)
		total += p
	}
	n := (maxPar + slots - 1) / slots
	l.Workers = make([]string, n)
	for i := range l.Workers {
		l.Workers[i] = "w-" + strconv.Itoa(i)
	}
	l.Assignments = make([]job.TaskAssignment, 0, total)
	for _, op := range l.Operators {
		for i := range op.Parallelism {
			l.Assignments = append(l.Assignments, job.TaskAssignment{
				WorkerID: l.Workers[i/slots], OperatorID: op.ID, Subtask: i,
			})
		}
	}
	return l
}

// Subtasks is the number of subtasks of every operator together.
func (l Layout) Subtasks() int {
	n := 0
	for _, op := range l.Operators {
		n += op.Parallelism
	}
	return n
}

// Parallelism maps each operator to its parallelism.
func (l Layout) Parallelism() map[string]int {
	m := make(map[string]int, len(l.Operators))
	for _, op := range l.Operators {
		m[op.ID] = op.Parallelism
	}
	return m
}

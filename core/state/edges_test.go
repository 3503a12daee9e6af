package state

import (
	"context"
	"testing"

	"github.com/weirstream/weir/core/job"
)

func TestEdgeTableCoversEveryState(t *testing.T) {
	out := map[job.State][]job.State{}
	seen := map[[2]job.State]bool{}
	for _, e := range edges {
		if !e.from.Known() || !e.to.Known() {
			t.Fatalf("edge %s → %s names an unknown state", e.from, e.to)
		}
		if seen[[2]job.State{e.from, e.to}] {
			t.Fatalf("edge %s → %s declared twice", e.from, e.to)
		}
		seen[[2]job.State{e.from, e.to}] = true
		out[e.from] = append(out[e.from], e.to)
	}
	for _, s := range job.States {
		if len(out[s]) == 0 {
			t.Errorf("%s has no way out", s)
		}
		if s.Terminal() {
			if len(out[s]) != 1 || out[s][0] != job.Scheduling {
				t.Errorf("terminal %s may only be scheduled again, has %v", s, out[s])
			}
			continue
		}
		if s != job.Failing && !seen[[2]job.State{s, job.Failing}] {
			t.Errorf("%s cannot fail", s)
		}
	}
	// Every state can be reached.
	reached := map[job.State]bool{job.Created: true}
	for _, e := range edges {
		reached[e.to] = true
	}
	for _, s := range job.States {
		if !reached[s] {
			t.Errorf("%s is unreachable", s)
		}
	}
}

// Every state's constructor names the state its file is about.
func TestStateNames(t *testing.T) {
	all := []State{&Created{}, &Scheduling{}, &Running{}, &CheckpointStopping{}, &Stopping{},
		&Finishing{}, &Rescaling{}, &Restarting{}, &Recovering{}, &Failing{}, &Failed{}, &Stopped{}, &Finished{}}
	if len(all) != len(job.States) {
		t.Fatalf("%d state types for %d states", len(all), len(job.States))
	}
	for i, s := range all {
		if s.Name() != job.States[i] {
			t.Errorf("state %d is named %s, want %s", i, s.Name(), job.States[i])
		}
	}
}

// rogue pretends to be Running and asks for a transition the table lacks.
type rogue struct{ Running }

func (*rogue) Tick(context.Context, *Context) (Transition, error) {
	return to(&Finished{}, "skipping Finishing")
}

func TestMachineRefusesUndeclaredTransitions(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start()
	h.bringUp()
	h.m.cur = &rogue{}
	h.tick()
	h.want(job.Failed)
	if msg := failureMessage(h.m.Status()); msg == "" || h.m.Status().Failure.Domain != job.DomainInternal {
		t.Fatalf("failure = %q, want an internal error naming the refused transition", msg)
	}
}

package process

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
)

// running brings the jobs up on the stack's leader and returns what the
// tests compare after a fail-over: each job's run and worker pids, and
// the highest ready epoch.
func (s *stack) running(ids ...job.ID) map[job.ID]jobSnapshot {
	s.t.Helper()
	out := map[job.ID]jobSnapshot{}
	for _, id := range ids {
		s.createJob(id, jobOptions{})
	}
	for _, id := range ids {
		st := s.waitState(id, job.Running, 30*time.Second)
		eps := s.waitReadyEpochs(id, st.RunID, 0, 1, 30*time.Second)
		pids := s.workerPIDs(id)
		if len(pids) != 1 || len(pids[st.RunID]) == 0 {
			s.t.Fatalf("job %s: worker pid files %v, want those of run %d only", id, pids, st.RunID)
		}
		out[id] = jobSnapshot{run: st.RunID, pids: pids[st.RunID], ready: eps[len(eps)-1]}
	}
	return out
}

type jobSnapshot struct {
	run   int64
	pids  map[string]int
	ready int64
}

// sameWorkers fails the test unless each job still runs the run it ran
// before, with the same worker processes alive and no other run started.
func (s *stack) sameWorkers(before map[job.ID]jobSnapshot) {
	s.t.Helper()
	for id, b := range before {
		st := s.status(id)
		if st.RunID != b.run || st.Restarts != 0 || st.State != job.Running {
			s.t.Errorf("job %s: status %+v, want run %d still Running without restarts", id, st, b.run)
		}
		pids := s.workerPIDs(id)
		if len(pids) != 1 || !maps.Equal(pids[b.run], b.pids) {
			s.t.Errorf("job %s: worker pids %v, want run %d's %v only", id, pids, b.run, b.pids)
		}
		for w, pid := range b.pids {
			if !alive(pid) {
				s.t.Errorf("job %s: worker %s (pid %d) is gone", id, w, pid)
			}
		}
		if cmd := s.commands(id); cmd.RunID != b.run {
			s.t.Errorf("job %s: command record of run %d, want %d", id, cmd.RunID, b.run)
		}
	}
}

// leaseFence is the fence of the lease record and its holder.
func (s *stack) leaseFence() (int64, string) {
	s.t.Helper()
	rec, err := s.lease.Record(s.t.Context())
	if err != nil || rec == nil {
		s.t.Fatalf("read the lease record: %v (%+v)", err, rec)
	}
	return int64(rec.Fence), rec.Owner
}

// waitClaimed waits until every job's status item carries fence f (the
// new leader has claimed it) and its stored state is Running.
func (s *stack) waitClaimed(f int64, within time.Duration, ids ...job.ID) {
	s.t.Helper()
	waitFor(s.t, within, fmt.Sprintf("jobs %v claimed under fence %d", ids, f), func() (bool, string) {
		for _, id := range ids {
			it := s.items(id)["status"]
			if it.Fence != f {
				return false, fmt.Sprintf("job %s status fence %d", id, it.Fence)
			}
		}
		return true, ""
	})
}

func TestSIGKILLOfTheLeader(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.startController("ctl-a", controllerOptions{})
	a.waitRole("leader", 20*time.Second)
	b := s.startController("ctl-b", controllerOptions{})
	b.waitRole("standby", 20*time.Second)
	ids := []job.ID{"kill-1", "kill-2"}
	before := s.running(ids...)
	old, _ := s.leaseFence()

	killed := time.Now()
	a.kill()
	// The new leader claims a job when it adopts it.
	waitFor(t, 20*time.Second, "ctl-b takes the lease", func() (bool, string) {
		f, owner := s.leaseFence()
		return f > old && owner == "ctl-b", fmt.Sprintf("fence %d held by %s", f, owner)
	})
	f, _ := s.leaseFence()
	s.waitClaimed(f, 20*time.Second, ids...)
	took := time.Since(killed)
	t.Logf("ctl-b runs every job %s after SIGKILL of the leader (lease %s)", took, quickLeaseDuration)
	if limit := quickLeaseDuration + 2*time.Second; took > limit {
		t.Errorf("the standby ran every job %s after the leader's SIGKILL, want within %s", took, limit)
	}
	b.waitRole("leader", 2*time.Second)

	// The new leader checkpoints the adopted runs; no worker was
	// restarted.
	for id, snap := range before {
		s.waitReadyEpochs(id, snap.run, snap.ready, 2, 30*time.Second)
	}
	s.sameWorkers(before)
}

func TestSIGTERMOfTheLeader(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.startController("ctl-a", controllerOptions{})
	a.waitRole("leader", 20*time.Second)
	b := s.startController("ctl-b", controllerOptions{})
	b.waitRole("standby", 20*time.Second)
	before := s.running("term-1")

	termed := time.Now()
	a.signal(syscall.SIGTERM)
	b.waitRole("leader", 10*time.Second)
	seen := time.Since(termed)
	select {
	case <-a.Done():
		if err := a.Err(); err != nil {
			t.Errorf("ctl-a exited with %v after SIGTERM, want status 0", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("ctl-a did not exit within 5 s of SIGTERM")
	}
	// The logs time the hand-over; /readyz, polled over HTTP, only
	// confirms it.
	stopped, acquired := a.logged("weir-controller stopped"), b.logged("lease acquired")
	took := acquired.Sub(termed)
	t.Logf("after SIGTERM of the leader: it exited in %s, ctl-b took the lease after %s (its /readyz said leader after %s)",
		stopped.Sub(termed), took, seen)
	if took > time.Second {
		t.Errorf("the standby took the lease %s after the leader's SIGTERM, want within 1 s", took)
	}
	f, _ := s.leaseFence()
	s.waitClaimed(f, 10*time.Second, "term-1")
	s.waitReadyEpochs("term-1", before["term-1"].run, before["term-1"].ready, 2, 30*time.Second)
	s.sameWorkers(before)
}

// pauseLease gives the paused controller's successor room to be frozen
// for a moment itself: it keeps its lease for 4 s without renewing.
var pauseLease = []string{"--lease-duration", "6s", "--lease-renew-interval", "500ms", "--lease-renew-deadline", "4s"}

func TestSIGSTOPOfTheLeaderPastItsLease(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.startController("ctl-a", controllerOptions{lease: pauseLease})
	a.waitRole("leader", 20*time.Second)
	b := s.startController("ctl-b", controllerOptions{lease: pauseLease})
	b.waitRole("standby", 20*time.Second)
	ids := []job.ID{"pause-1", "pause-2"}
	before := s.running(ids...)
	old, _ := s.leaseFence()

	paused := time.Now()
	a.signal(syscall.SIGSTOP)
	waitFor(t, 30*time.Second, "ctl-b takes the lease", func() (bool, string) {
		f, owner := s.leaseFence()
		return f > old && owner == "ctl-b", fmt.Sprintf("fence %d held by %s", f, owner)
	})
	f, _ := s.leaseFence()
	s.waitClaimed(f, 20*time.Second, ids...)
	t.Logf("ctl-b runs every job %s after ctl-a was paused", time.Since(paused))
	for id, snap := range before {
		s.waitReadyEpochs(id, snap.run, snap.ready, 1, 30*time.Second)
	}

	// Freeze the new leader too, so that whatever changes from here on
	// is the old leader's doing.
	b.signal(syscall.SIGSTOP)
	frozen := time.Now()
	snapshot := s.stableItems(ids)
	lease, err := s.lease.Record(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	resumed := time.Now()
	a.signal(syscall.SIGCONT)
	// After its release attempt, /readyz says it waits for the lease:
	// its leader work has ended.
	a.waitRole("standby: waiting for the lease", 3*time.Second)
	t.Logf("ctl-a is a standby %s after SIGCONT", time.Since(resumed))
	for _, l := range a.lines() {
		if !l.Time.Before(resumed) {
			t.Logf("ctl-a after SIGCONT: %s %s %s", l.Msg, l.Job, l.Err)
		}
	}
	after := map[job.ID]map[string]item{}
	for _, id := range ids {
		after[id] = s.items(id)
	}
	leaseAfter, err := s.lease.Record(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b.signal(syscall.SIGCONT)
	t.Logf("ctl-b was frozen for %s", time.Since(frozen))

	for _, id := range ids {
		for _, sk := range slices.Sorted(maps.Keys(snapshot[id])) {
			if was, now := snapshot[id][sk], after[id][sk]; was != now {
				t.Errorf("job %s item %s changed while only the resumed ex-leader ran:\nwas %s\nnow %s", id, sk, was.Raw, now.Raw)
			}
		}
		for sk, it := range after[id] {
			if _, ok := snapshot[id][sk]; !ok {
				t.Errorf("job %s item %s appeared while only the resumed ex-leader ran: %s", id, sk, it.Raw)
			}
		}
	}
	if *lease != *leaseAfter {
		t.Errorf("the lease record changed while only the resumed ex-leader ran: was %+v, now %+v", lease, leaseAfter)
	}
	if !strings.Contains(a.Out.String(), `"msg":"lease lost: stopping all leader work"`) {
		t.Errorf("ctl-a did not log that it lost the lease")
	}

	// The new leader carries on; fences on the items never go back.
	b.waitRole("leader", 2*time.Second)
	for id := range before {
		s.waitReadyEpochs(id, before[id].run, maxEpoch(snapshot[id]), 1, 30*time.Second)
		for sk, it := range s.items(id) {
			if was, ok := snapshot[id][sk]; ok && it.Fence < was.Fence {
				t.Errorf("job %s item %s: fence went back from %d to %d", id, sk, was.Fence, it.Fence)
			}
		}
	}
	s.sameWorkers(before)
	a.waitRole("standby", time.Second)
}

// stableItems reads the jobs' items until two reads 100 ms apart agree
// (a frozen controller's last requests may still be landing).
func (s *stack) stableItems(ids []job.ID) map[job.ID]map[string]item {
	s.t.Helper()
	read := func() map[job.ID]map[string]item {
		out := map[job.ID]map[string]item{}
		for _, id := range ids {
			out[id] = s.items(id)
		}
		return out
	}
	last := read()
	var snap map[job.ID]map[string]item
	waitFor(s.t, 5*time.Second, "the items settle", func() (bool, string) {
		time.Sleep(100 * time.Millisecond)
		snap = read()
		same := maps.EqualFunc(last, snap, func(x, y map[string]item) bool { return maps.Equal(x, y) })
		last = snap
		return same, "items still changing"
	})
	return snap
}

// maxEpoch is the highest checkpoint epoch among the items.
func maxEpoch(items map[string]item) int64 {
	var top int64
	for sk := range items {
		var e int64
		if _, err := fmt.Sscanf(sk, "cp#%d", &e); err == nil {
			top = max(top, e)
		}
	}
	return top
}

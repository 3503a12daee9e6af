package storetest

import (
	"errors"
	"testing"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// wantFenced checks that err is ErrFenced and nothing else.
func wantFenced(t *testing.T, op string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrFenced) {
		t.Fatalf("%s under a deposed fence = %v, want ErrFenced", op, err)
	}
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrEpochNotIncreasing) {
		t.Fatalf("%s: %v matches another error too; a fenced writer must see only ErrFenced", op, err)
	}
}

// snapshot is everything the store holds of one job, for checking that
// refused writes changed nothing.
type snapshot struct {
	config   job.Config
	status   job.Status
	commands job.Commands
	cps      []job.Checkpoint
	maxEpoch int64
}

func take(t *testing.T, s store.Store, id job.ID) snapshot {
	t.Helper()
	var (
		snap snapshot
		err  error
	)
	if snap.config, err = s.GetConfig(ctx(t), id); err != nil {
		t.Fatalf("GetConfig: %v", err)
	}
	if snap.status, err = s.GetStatus(ctx(t), id); err != nil {
		t.Fatalf("GetStatus: %v", err)
	}
	if snap.commands, err = s.GetCommands(ctx(t), id); err != nil {
		t.Fatalf("GetCommands: %v", err)
	}
	if snap.cps, err = s.ListCheckpoints(ctx(t), id); err != nil {
		t.Fatalf("ListCheckpoints: %v", err)
	}
	if snap.maxEpoch, err = s.MaxEpoch(ctx(t), id); err != nil {
		t.Fatalf("MaxEpoch: %v", err)
	}
	return snap
}

// leaderJob is a job a leader under fence f has written every item of:
// config, status, command record and checkpoints 1 and 2.
func leaderJob(t *testing.T, s store.Store, f store.Fence) job.ID {
	t.Helper()
	id := JobID(t, "f")
	mustPutConfig(t, s, Config(id))
	if err := s.Claim(ctx(t), f, id); err != nil {
		t.Fatalf("Claim(fence %d): %v", f, err)
	}
	mustPutStatus(t, s, f, Status(id))
	mustCreate(t, s, f, Checkpoint(id, 1))
	mustCreate(t, s, f, Checkpoint(id, 2))
	if _, err := s.PutCommands(ctx(t), f, Commands(id)); err != nil {
		t.Fatalf("PutCommands: %v", err)
	}
	eventually(t, "job listed", listedAt(t, s, id, 1))
	return id
}

func runClaims(t *testing.T, newStore NewStore) {
	// After a new leader claims the job, the deposed leader's writes to
	// every item kind are refused and change nothing, although it never
	// wrote any item under the new fence.
	t.Run("StaleLeaderIsRefusedEverywhere", func(t *testing.T) {
		s := newStore(t)
		id := leaderJob(t, s, 1)
		if err := s.Claim(ctx(t), 2, id); err != nil {
			t.Fatalf("Claim(fence 2): %v", err)
		}
		before := take(t, s, id)

		st := before.status
		st.State = job.Failed
		_, err := s.PutStatus(ctx(t), 1, st)
		wantFenced(t, "PutStatus", err)
		_, err = s.PutCommands(ctx(t), 1, job.Commands{JobID: id, RunID: 3, Stop: &job.StopCommand{Mode: job.StopImmediate}})
		wantFenced(t, "PutCommands", err)
		wantFenced(t, "CreateCheckpoint", s.CreateCheckpoint(ctx(t), 1, Checkpoint(id, 3)))
		compacted := Checkpoint(id, 2)
		compacted.State = job.CheckpointCompacted
		wantFenced(t, "UpdateCheckpoint", s.UpdateCheckpoint(ctx(t), 1, compacted))
		_, err = s.DeleteCheckpoints(ctx(t), 1, id, 3)
		wantFenced(t, "DeleteCheckpoints", err)
		wantFenced(t, "Park", s.Park(ctx(t), 1, id, before.config.Version))

		wantEqual(t, "the job after a deposed leader's writes", take(t, s, id), before)
		eventually(t, "job still listed", listedAt(t, s, id, 1))

		// The new leader writes every item.
		st = mustPutStatus(t, s, 2, before.status)
		if _, err := s.PutCommands(ctx(t), 2, Commands(id)); err != nil {
			t.Fatalf("PutCommands under the new fence: %v", err)
		}
		mustCreate(t, s, 2, Checkpoint(id, 3))
		if err := s.UpdateCheckpoint(ctx(t), 2, compacted); err != nil {
			t.Fatalf("UpdateCheckpoint under the new fence: %v", err)
		}
		if n, err := s.DeleteCheckpoints(ctx(t), 2, id, 2); err != nil || n != 1 {
			t.Fatalf("DeleteCheckpoints under the new fence = %d, %v; want 1, nil", n, err)
		}
		if err := s.Park(ctx(t), 2, id, before.config.Version); err != nil {
			t.Fatalf("Park under the new fence: %v", err)
		}
		eventually(t, "job parked by the new leader", notListed(t, s, id))
		if _, err := s.PutStatus(ctx(t), 1, st); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("PutStatus under fence 1 after the new leader wrote = %v, want ErrFenced", err)
		}
	})
	t.Run("ClaimRefusesALowerFenceAndRepeats", func(t *testing.T) {
		s := newStore(t)
		id := leaderJob(t, s, 3)
		err := s.Claim(ctx(t), 2, id)
		wantFenced(t, "Claim", err)
		for range 2 {
			if err := s.Claim(ctx(t), 3, id); err != nil {
				t.Fatalf("repeated Claim under the same fence: %v", err)
			}
		}
		before := take(t, s, id)
		if err := s.Claim(ctx(t), 4, id); err != nil {
			t.Fatalf("Claim under a higher fence: %v", err)
		}
		wantEqual(t, "the job after a claim", take(t, s, id), before)
		_, err = s.PutStatus(ctx(t), 3, before.status)
		wantFenced(t, "PutStatus", err)
	})
	// A job claimed before anything was written has no status, no
	// commands and no checkpoints, and the claiming leader creates them.
	t.Run("ClaimOfANewJobCreatesNothing", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "f")
		if err := s.Claim(ctx(t), 2, id); err != nil {
			t.Fatalf("Claim: %v", err)
		}
		_, err := s.GetStatus(ctx(t), id)
		wantIs(t, err, store.ErrNotFound)
		_, err = s.GetCommands(ctx(t), id)
		wantIs(t, err, store.ErrNotFound)
		wantEpochs(t, s, id)
		wantMaxEpoch(t, s, id, 0)
		_, err = s.PutCommands(ctx(t), 1, Commands(id))
		wantFenced(t, "PutCommands", err)
		_, err = s.PutStatus(ctx(t), 1, Status(id))
		wantFenced(t, "PutStatus", err)
		if got := mustPutStatus(t, s, 2, Status(id)); got.Version != 1 {
			t.Fatalf("first status has version %d, want 1", got.Version)
		}
		c, err := s.PutCommands(ctx(t), 2, Commands(id))
		if err != nil || c.Version != 1 {
			t.Fatalf("first PutCommands = version %d, %v; want 1, nil", c.Version, err)
		}
	})
	// A conflict on a status tells the writer under which fence the
	// stored status was written: at its own fence, the status is its own.
	t.Run("StatusConflictNamesTheStoredFence", func(t *testing.T) {
		s := newStore(t)
		v1 := mustPutStatus(t, s, 2, Status(JobID(t, "f")))
		mustPutStatus(t, s, 2, v1)
		_, err := s.PutStatus(ctx(t), 2, v1)
		wantConflict(t, err, "status", 1, 2)
		var ce *store.ConflictError
		if errors.As(err, &ce); ce.CurrentFence != 2 {
			t.Fatalf("conflict names stored fence %d, want 2", ce.CurrentFence)
		}
		_, err = s.PutStatus(ctx(t), 3, v1)
		if errors.As(err, &ce); ce == nil || ce.CurrentFence != 2 {
			t.Fatalf("conflict under a higher fence = %v, want one naming stored fence 2", err)
		}
	})
	t.Run("ParkFencedWinsOverConflict", func(t *testing.T) {
		s := newStore(t)
		id := leaderJob(t, s, 1)
		v1, err := s.GetConfig(ctx(t), id)
		if err != nil {
			t.Fatal(err)
		}
		mustPutConfig(t, s, v1)
		mustPutStatus(t, s, 2, take(t, s, id).status)
		wantFenced(t, "Park", s.Park(ctx(t), 1, id, v1.Version))
		err = s.Park(ctx(t), 2, id, v1.Version)
		wantConflict(t, err, "config", 1, 2)
	})
}

// RunLostAnswers checks that every write knows its own answer on a store
// whose every conditional write has its first answer lost: the write is
// applied, its answer never arrives, and the same request, token and all,
// is applied again; the store answers with the second reply. lost counts
// the answers lost so far, so the suite can tell that each write really
// lost one. Then the whole suite runs on the same kind of store: a lost
// answer must change no answer anywhere.
func RunLostAnswers(t *testing.T, newStore NewStore, lost func() int, opts ...Option) {
	t.Run("EveryWriteKnowsItsAnswer", func(t *testing.T) {
		s := newStore(t)
		id := JobID(t, "l")
		// once runs one write and checks that it lost an answer.
		once := func(op string, write func() error) {
			t.Helper()
			before := lost()
			if err := write(); err != nil {
				t.Fatalf("%s with its answer lost: %v", op, err)
			}
			if lost() == before {
				t.Fatalf("%s lost no answer: the store under test does not lose them", op)
			}
		}
		var cfg job.Config
		once("PutConfig (create)", func() (err error) { cfg, err = s.PutConfig(ctx(t), Config(id)); return err })
		if cfg.Version != 1 {
			t.Fatalf("PutConfig returned version %d, want 1", cfg.Version)
		}
		once("PutConfig (update)", func() (err error) { cfg, err = s.PutConfig(ctx(t), cfg); return err })
		if cfg.Version != 2 {
			t.Fatalf("PutConfig returned version %d, want 2", cfg.Version)
		}
		once("Claim", func() error { return s.Claim(ctx(t), 1, id) })
		st := Status(id)
		for want := int64(1); want <= 3; want++ {
			once("PutStatus", func() (err error) { st, err = s.PutStatus(ctx(t), 1, st); return err })
			if st.Version != want {
				t.Fatalf("PutStatus returned version %d, want %d", st.Version, want)
			}
		}
		read, err := s.GetStatus(ctx(t), id)
		if err != nil {
			t.Fatal(err)
		}
		wantEqual(t, "stored status", read, st)
		for want := int64(1); want <= 3; want++ {
			c, err := s.PutCommands(ctx(t), 1, Commands(id))
			if err != nil || c.Version != want {
				t.Fatalf("PutCommands = version %d, %v; want %d: the version must grow by exactly one", c.Version, err, want)
			}
		}
		// Epochs taken as MaxEpoch+1 have no gap, and every one has its
		// item: no epoch was reserved twice, none left without a record.
		for range 4 {
			once("CreateCheckpoint", func() error {
				e, err := s.MaxEpoch(ctx(t), id)
				if err != nil {
					return err
				}
				return s.CreateCheckpoint(ctx(t), 1, Checkpoint(id, e+1))
			})
		}
		wantEpochs(t, s, id, 1, 2, 3, 4)
		wantMaxEpoch(t, s, id, 4)
		ready := Checkpoint(id, 4)
		ready.State = job.CheckpointReady
		once("UpdateCheckpoint", func() error { return s.UpdateCheckpoint(ctx(t), 1, ready) })
		var n int
		once("DeleteCheckpoints", func() (err error) { n, err = s.DeleteCheckpoints(ctx(t), 1, id, 3); return err })
		if n != 2 {
			t.Fatalf("DeleteCheckpoints says it removed %d, want 2", n)
		}
		cps, err := s.ListCheckpoints(ctx(t), id)
		if err != nil || len(cps) != 2 {
			t.Fatalf("ListCheckpoints = %v, %v; want epochs 3 and 4", epochs(cps), err)
		}
		wantEqual(t, "updated checkpoint", cps[1], ready)
		eventually(t, "job listed", listedAt(t, s, id, 2))
		once("Park", func() error { return s.Park(ctx(t), 1, id, cfg.Version) })
		eventually(t, "job parked", notListed(t, s, id))
	})
	t.Run("Suite", func(t *testing.T) { Run(t, newStore, opts...) })
}

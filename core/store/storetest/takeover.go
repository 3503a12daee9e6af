package storetest

import (
	"errors"
	"testing"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// readJobs reads ids in bulk and checks the call succeeded.
func readJobs(t *testing.T, s store.Store, ids ...job.ID) []store.JobState {
	t.Helper()
	got, err := s.ReadJobs(ctx(t), ids)
	if err != nil {
		t.Fatalf("ReadJobs: %v", err)
	}
	if len(got) != len(ids) {
		t.Fatalf("ReadJobs returned %d states for %d jobs", len(got), len(ids))
	}
	for i, js := range got {
		if js.ID != ids[i] {
			t.Fatalf("ReadJobs state %d is of job %s, want %s", i, js.ID, ids[i])
		}
	}
	return got
}

// wantRead checks that a bulk read holds what the single reads return.
func wantRead(t *testing.T, js store.JobState, want snapshot) {
	t.Helper()
	if js.Err != nil {
		t.Fatalf("ReadJobs of %s: %v", js.ID, js.Err)
	}
	wantEqual(t, "config read in bulk", js.Config, want.config)
	if !js.HasStatus || !js.HasCommands {
		t.Fatalf("ReadJobs of %s: has status %v, has commands %v; want both", js.ID, js.HasStatus, js.HasCommands)
	}
	wantEqual(t, "status read in bulk", js.Status, want.status)
	wantEqual(t, "commands read in bulk", js.Commands, want.commands)
	wantEqual(t, "checkpoints read in bulk", js.Checkpoints, want.cps)
	if js.MaxEpoch != want.maxEpoch {
		t.Fatalf("ReadJobs of %s: max epoch %d, want %d", js.ID, js.MaxEpoch, want.maxEpoch)
	}
}

// wantClaimed checks that a deposed leader under fence 1 can write no item
// of the job any more (the writes it tries change nothing).
func wantClaimed(t *testing.T, s store.Store, id job.ID) {
	t.Helper()
	before := take(t, s, id)
	_, err := s.PutStatus(ctx(t), 1, before.status)
	wantFenced(t, "PutStatus after a bulk claim", err)
	_, err = s.PutCommands(ctx(t), 1, Commands(id))
	wantFenced(t, "PutCommands after a bulk claim", err)
	wantFenced(t, "CreateCheckpoint after a bulk claim", s.CreateCheckpoint(ctx(t), 1, Checkpoint(id, before.maxEpoch+1)))
	for _, cp := range before.cps {
		cp.State = job.CheckpointFailed
		wantFenced(t, "UpdateCheckpoint after a bulk claim", s.UpdateCheckpoint(ctx(t), 1, cp))
	}
	_, err = s.DeleteCheckpoints(ctx(t), 1, id, before.maxEpoch+1)
	wantFenced(t, "DeleteCheckpoints after a bulk claim", err)
	wantEqual(t, "the job after a deposed leader's writes", take(t, s, id), before)
}

// writtenJob is leaderJob without waiting for the index (a bulk read does
// not use it, and on a shared table each wait queries the whole index).
func writtenJob(t *testing.T, s store.Store, f store.Fence) job.ID {
	t.Helper()
	id := JobID(t, "t")
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
	return id
}

func runTakeover(t *testing.T, newStore NewStore) {
	// A bulk read returns what the single reads do, for jobs with every
	// item, with a config only, and without a config.
	t.Run("ReadJobsIsTheSingleReads", func(t *testing.T) {
		s := newStore(t)
		full := writtenJob(t, s, 1)
		bare := JobID(t, "t")
		mustPutConfig(t, s, Config(bare))
		missing := JobID(t, "t")
		got := readJobs(t, s, full, bare, missing)
		wantRead(t, got[0], take(t, s, full))
		if got[1].Err != nil || got[1].HasStatus || got[1].HasCommands || len(got[1].Checkpoints) != 0 || got[1].MaxEpoch != 0 {
			t.Fatalf("ReadJobs of a job with only a config = %+v, want its config alone", got[1])
		}
		wantEqual(t, "config of a new job read in bulk", got[1].Config.JobID, bare)
		wantIs(t, got[2].Err, store.ErrNotFound)
		if got, err := s.ReadJobs(ctx(t), make([]job.ID, store.MaxTakeoverBatch+1)); err == nil {
			t.Fatalf("ReadJobs of %d jobs = %d states, nil; want an error", len(got), store.MaxTakeoverBatch+1)
		}
	})
	// Jobs claimed in bulk are fenced on every item, as Claim fences
	// them, and claiming them again under the same fence changes nothing.
	// 26 jobs of 4 items: more than one transaction of 100 items.
	t.Run("ClaimJobsFencesEveryItem", func(t *testing.T) {
		s := newStore(t)
		ids := make([]job.ID, 26)
		for i := range ids {
			ids[i] = writtenJob(t, s, 1)
		}
		fresh := JobID(t, "t")
		mustPutConfig(t, s, Config(fresh))
		ids = append(ids, fresh)
		read := readJobs(t, s, ids...)
		for range 2 {
			for i, err := range s.ClaimJobs(ctx(t), 2, read) {
				if err != nil {
					t.Fatalf("ClaimJobs of unchanged job %s: %v", ids[i], err)
				}
			}
		}
		for _, id := range ids[:3] {
			wantClaimed(t, s, id)
		}
		_, err := s.PutStatus(ctx(t), 1, Status(fresh))
		wantFenced(t, "PutStatus of a new job after a bulk claim", err)
		if _, err := s.PutCommands(ctx(t), 1, Commands(fresh)); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("PutCommands of a new job after a bulk claim = %v, want ErrFenced", err)
		}
		mustPutStatus(t, s, 2, Status(fresh))
	})
	// A job an earlier leader wrote after the bulk read is not claimed
	// (the earlier leader can still write it: nothing stale is acted
	// on), while the unchanged jobs of the same call are; one claimed by
	// a newer leader is fenced out.
	t.Run("ChangedAfterReadIsNotClaimed", func(t *testing.T) {
		changes := map[string]func(t *testing.T, s store.Store, id job.ID){
			"status": func(t *testing.T, s store.Store, id job.ID) {
				mustPutStatus(t, s, 1, take(t, s, id).status)
			},
			"commands": func(t *testing.T, s store.Store, id job.ID) {
				if _, err := s.PutCommands(ctx(t), 1, Commands(id)); err != nil {
					t.Fatal(err)
				}
			},
			"new checkpoint": func(t *testing.T, s store.Store, id job.ID) { mustCreate(t, s, 1, Checkpoint(id, 3)) },
			"checkpoint": func(t *testing.T, s store.Store, id job.ID) {
				cp := Checkpoint(id, 2)
				cp.State = job.CheckpointReady
				if err := s.UpdateCheckpoint(ctx(t), 1, cp); err != nil {
					t.Fatal(err)
				}
			},
			"deleted checkpoint": func(t *testing.T, s store.Store, id job.ID) {
				if n, err := s.DeleteCheckpoints(ctx(t), 1, id, 2); err != nil || n != 1 {
					t.Fatalf("DeleteCheckpoints = %d, %v", n, err)
				}
			},
			"parked": func(t *testing.T, s store.Store, id job.ID) {
				if err := s.Park(ctx(t), 1, id, take(t, s, id).config.Version); err != nil {
					t.Fatal(err)
				}
			},
		}
		for name, change := range changes {
			t.Run(name, func(t *testing.T) {
				s := newStore(t)
				changed, same := writtenJob(t, s, 1), writtenJob(t, s, 1)
				read := readJobs(t, s, changed, same)
				change(t, s, changed)
				errs := s.ClaimJobs(ctx(t), 2, read)
				wantIs(t, errs[0], store.ErrChanged)
				if errors.Is(errs[0], store.ErrFenced) {
					t.Fatalf("a changed job's claim = %v: it matches ErrFenced too", errs[0])
				}
				if errs[1] != nil {
					t.Fatalf("ClaimJobs of the unchanged job: %v", errs[1])
				}
				wantClaimed(t, s, same)
				// Not claimed: the earlier leader still writes it.
				mustPutStatus(t, s, 1, take(t, s, changed).status)
				// Claimed one at a time, it is fenced as usual.
				if err := s.Claim(ctx(t), 2, changed); err != nil {
					t.Fatalf("Claim after a refused bulk claim: %v", err)
				}
				wantClaimed(t, s, changed)
			})
		}
	})
	t.Run("ClaimedByANewerLeaderIsFenced", func(t *testing.T) {
		s := newStore(t)
		id := writtenJob(t, s, 1)
		read := readJobs(t, s, id)
		if err := s.Claim(ctx(t), 3, id); err != nil {
			t.Fatal(err)
		}
		wantFenced(t, "ClaimJobs", s.ClaimJobs(ctx(t), 2, read)[0])
	})
	// A state not read by ReadJobs is never claimed in bulk.
	t.Run("UnreadStateIsNotClaimed", func(t *testing.T) {
		s := newStore(t)
		id := writtenJob(t, s, 1)
		wantIs(t, s.ClaimJobs(ctx(t), 2, []store.JobState{{ID: id}})[0], store.ErrChanged)
		mustPutStatus(t, s, 1, take(t, s, id).status)
	})
}

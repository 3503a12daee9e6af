package chaos

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/chaos/checker"
	"github.com/weirstream/weir/internal/proctest"
)

// logged is a finished process that wrote lines, as a controller would.
func logged(t *testing.T, owner string, lines ...string) *controllerProcess {
	t.Helper()
	p, err := proctest.Start(exec.Command("printf", "%s\\n", strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	return &controllerProcess{owner: owner, p: p, ended: true}
}

func line(at time.Time, msg, job string, fence int) string {
	return fmt.Sprintf(`{"time":%q,"level":"INFO","msg":%q,"job":%q,"fence":%d}`, at.Format(time.RFC3339Nano), msg, job, fence)
}

// A job's tenure that reports an effect after a later fence's tenure of the
// job began is two runners at once, unless its controller was frozen
// meanwhile.
func TestRunnerOverlapFromControllerLogs(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := logged(t, "a",
		line(t0, "job adopted", "j", 1),
		line(t0.Add(30*time.Second), "state transition", "j", 1),
		line(t0.Add(time.Second), "test fault injected", "", 0))
	b := logged(t, "b", line(t0.Add(20*time.Second), "job adopted", "j", 2), line(t0.Add(21*time.Second), "checkpoint ready", "j", 2))
	other := logged(t, "c", line(t0.Add(25*time.Second), "state transition", "k", 3))

	ck := checker.New(checker.Config{})
	f := &processFleet{all: []*controllerProcess{a, b, other}}
	if excused := f.check(ck, 10*time.Second); excused != 0 {
		t.Fatalf("%d overlaps excused, none was frozen", excused)
	}
	v := ck.Violations()
	if len(v) != 1 || v[0].Check != "runner_overlap" || v[0].Job != "j" {
		t.Fatalf("violations %v, want one runner_overlap of job j", v)
	}

	// Frozen from before b began until after a's late effect: explained.
	a.pauses = []window{{t0.Add(15 * time.Second), t0.Add(29 * time.Second)}}
	ck = checker.New(checker.Config{})
	if excused := f.check(ck, 10*time.Second); excused != 1 || len(ck.Violations()) != 0 {
		t.Fatalf("excused %d, violations %v; want the overlap explained by the pause", excused, ck.Violations())
	}
	if got := a.faults(); len(got) != 1 || got[0].N != 1 {
		t.Fatalf("faults counted from the log: %v", got)
	}

	// A controller that exited unasked is reported.
	a.ended = false
	ck = checker.New(checker.Config{})
	f.check(ck, 10*time.Second)
	if v := ck.Violations(); len(v) != 1 || v[0].Check != "controller_exited" {
		t.Fatalf("violations %v, want controller_exited", v)
	}
}

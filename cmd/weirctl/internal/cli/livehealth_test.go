package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/dynamo"
)

// TestLiveHealthFields plays the controller: it writes a status with a
// health summary into the stack's table, as the controller does, and
// checks that the config API on the emulator returns it and weirctl shows
// it in list, get and watch, in tables and JSON, with ages computed at read
// time.
func TestLiveHealthFields(t *testing.T) {
	h, api := newLiveHarness(t)
	h.expect(h.run("create", "-f", demoFile), ExitOK)
	other := strings.Replace(mustRead(t, demoFile), "id: demo", "id: other", 1)
	h.expect(h.run("create", "-f", writeFile(t, other)), ExitOK)

	st, err := dynamo.NewStore(dynamo.NewClient(awstest.Config(t)), api.table)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	h.now = now
	if err := st.Claim(t.Context(), 7, "demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutStatus(t.Context(), 7, job.Status{
		JobID: "demo", State: job.Recovering, RunID: 3, Restarts: 2, TransitionedAt: now.Add(-4 * time.Second),
		LastReadyEpoch: 17, LastReadyAt: now.Add(-40 * time.Second),
		Failure: &job.Failure{Message: "worker demo-r2-w-1 has sent nothing for 1m40s", Domain: job.DomainInternal, At: now.Add(-4 * time.Second)},
		Health:  job.Health{HeartbeatAt: now.Add(-104 * time.Second), RecordsInPerSec: 0, RecordsOutPerSec: 0, TakenAt: now.Add(-4 * time.Second)},
	}); err != nil {
		t.Fatal(err)
	}

	r := h.run("list", "-o", "json")
	h.expect(r, ExitOK)
	var list struct {
		Jobs []map[string]any `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Jobs) != 2 {
		t.Fatalf("list -o json: %v\n%s", err, r.stdout)
	}
	demo := list.Jobs[0]
	want := map[string]any{
		"id": "demo", "state": "Recovering", "run_id": 3.0, "restarts": 2.0, "last_ready_epoch": 17.0,
		"last_ready_at": now.Add(-40 * time.Second).Format(time.RFC3339Nano), "heartbeat_age_seconds": 104.0,
		"records_in_per_sec": 0.0, "records_out_per_sec": 0.0,
	}
	for k, v := range want {
		if demo[k] != v {
			t.Errorf("list -o json: demo's %s = %v, want %v", k, demo[k], v)
		}
	}
	if le, _ := demo["last_error"].(map[string]any); le == nil || !strings.Contains(le["message"].(string), "sent nothing") {
		t.Errorf("list -o json: demo's last_error = %v", demo["last_error"])
	}
	if list.Jobs[1]["state"] != statePending || list.Jobs[1]["heartbeat_age_seconds"] != nil {
		t.Errorf("list -o json: other = %v", list.Jobs[1])
	}

	r = h.run("list")
	h.expect(r, ExitOK)
	row := strings.Split(strings.TrimSpace(r.stdout), "\n")[1]
	if f := strings.Fields(row); f[0] != "demo" || f[1] != "Recovering" || f[2] != "4s" || f[5] != "17" || f[6] != "40s" || f[7] != "1m44s" || f[8] != "0/0" ||
		!strings.Contains(row, "4s ago, internal: worker demo-r2-w-1") {
		t.Errorf("list row = %q", row)
	}

	r = h.run("get", "demo")
	h.expect(r, ExitOK)
	for _, w := range []string{"Last ready      epoch 17, 40s ago", "Heartbeat       1m44s ago (the least recently heard worker)", "Records/s       0/0 (in/out)", "Health as of    4s ago"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("get lacks %q:\n%s", w, r.stdout)
		}
	}
	r = h.run("watch", "demo", "--interval", "100ms", "--for", "300ms")
	h.expect(r, ExitOK)
	if !strings.Contains(r.stdout, "demo state=Recovering for=4s run=3 restarts=2 last_ready_epoch=17 epoch_age=40s heartbeat_age=1m44s records_per_s=0/0") {
		t.Errorf("watch printed:\n%s", r.stdout)
	}
}

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/weirstream/weir/cmd/weirctl/internal/client"
)

// harness runs weirctl against an API server.
type harness struct {
	t   *testing.T
	api *apiStub
	url string
	now time.Time
	tty bool
	// width of the pretend terminal.
	width int
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, api: newAPIStub(), now: time.Date(2026, 11, 29, 12, 0, 30, 0, time.UTC)}
	srv := httptest.NewServer(newContract(t, h.api))
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

type result struct {
	code           int
	stdout, stderr string
}

func (h *harness) run(args ...string) result {
	return h.runCtx(context.Background(), "", args...)
}

func (h *harness) runCtx(ctx context.Context, stdin string, args ...string) result {
	h.t.Helper()
	var out, errOut bytes.Buffer
	code := Run(ctx, args, Env{
		Stdin:    strings.NewReader(stdin),
		Stdout:   &out,
		Stderr:   &errOut,
		Getenv:   func(k string) string { return map[string]string{EnvAPIURL: h.url}[k] },
		Terminal: func() (bool, int) { return h.tty, h.width },
		Now:      func() time.Time { return h.now },
	})
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

func (h *harness) expect(r result, code int, stderrHas ...string) {
	h.t.Helper()
	if r.code != code {
		h.t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stderrHas {
		if !strings.Contains(r.stderr, s) {
			h.t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
}

const demoFile = "../../examples/demo-job.yaml"

func (h *harness) createDemo() {
	h.t.Helper()
	h.expect(h.run("create", "-f", demoFile), ExitOK)
}

// running makes the stub's demo job Running with ready epochs 1..3, its
// slowest worker last heard 7 s ago, as of a summary taken 3 s ago.
func (h *harness) running() {
	t0 := h.now.Add(-20 * time.Second)
	h.api.setStatus("demo", client.Status{State: "Running", RunID: 2, Restarts: 1, TransitionedAt: t0, ConfigVersion: 1,
		LastReadyEpoch: 3, LastReadyAt: t0.Add(4200 * time.Millisecond),
		LastError: &client.Failure{Domain: "internal", Message: "worker w-1 timed out", At: t0.Add(-30 * time.Second)},
		Health: &client.Health{HeartbeatAt: h.now.Add(-7 * time.Second), RecordsInPerSec: 1520.5, RecordsOutPerSec: 1480,
			TakenAt: h.now.Add(-3 * time.Second)}},
		client.Checkpoint{Epoch: 1, State: "ready", StartedAt: t0, FinishedAt: t0.Add(100 * time.Millisecond)},
		client.Checkpoint{Epoch: 2, State: "ready", StartedAt: t0.Add(2 * time.Second), FinishedAt: t0.Add(2100 * time.Millisecond)},
		client.Checkpoint{Epoch: 3, State: "ready", StartedAt: t0.Add(4 * time.Second), FinishedAt: t0.Add(4200 * time.Millisecond)},
		client.Checkpoint{Epoch: 4, State: "in_progress", StartedAt: t0.Add(6 * time.Second)},
	)
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCreateSendsTheJobFile(t *testing.T) {
	h := newHarness(t)
	r := h.run("create", "-f", demoFile)
	h.expect(r, ExitOK)
	if !strings.Contains(r.stdout, "job demo created (version 1)") {
		t.Errorf("stdout = %q", r.stdout)
	}
	reqs := h.api.sent()
	if len(reqs) != 1 || reqs[0].Method != "POST" || reqs[0].Path != "/jobs" {
		t.Fatalf("requests = %+v, want one POST /jobs", reqs)
	}
	body := reqs[0].Body
	if body["id"] != "demo" || body["checkpoint_interval"] != "2s" {
		t.Errorf("body = %v", body)
	}
	ops := body["spec"].(map[string]any)["operators"].([]any)
	if len(ops) != 3 || ops[2].(map[string]any)["committing"] != true {
		t.Errorf("operators = %v", ops)
	}
	if reqs[0].Auth != "" {
		t.Errorf("a local request was signed: %q", reqs[0].Auth)
	}
}

func TestCreateJSONAndExisting(t *testing.T) {
	h := newHarness(t)
	r := h.run("create", "-f", demoFile, "-o", "json")
	h.expect(r, ExitOK)
	var v map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	if v["id"] != "demo" || v["state"] != statePending || v["last_ready_epoch"] != float64(0) {
		t.Errorf("JSON = %v", v)
	}
	h.expect(h.run("create", "-f", demoFile), ExitRefused, "Job exists (409)", "weirctl get demo")
}

func TestCreateFromStandardInput(t *testing.T) {
	h := newHarness(t)
	raw, err := os.ReadFile(demoFile)
	if err != nil {
		t.Fatal(err)
	}
	h.expect(h.runCtx(context.Background(), string(raw), "create", "-f", "-"), ExitOK)
}

func TestCreateRefusesABadFileBeforeAnyRequest(t *testing.T) {
	cases := map[string]struct{ file, want string }{
		"unknown field": {"id: a\nspec: {program: p, slots_per_worker: 1, operators: [{id: s, parallelism: 1, source: true}]}\nchekpoint_interval: 2s\n",
			`line 3: unknown field "chekpoint_interval"`},
		"bad duration": {"id: a\nspec: {program: p, slots_per_worker: 1, operators: [{id: s, parallelism: 1, source: true}]}\ncheckpoint_interval: 2 seconds\n",
			`checkpoint_interval "2 seconds" is not a duration`},
		"short interval": {"id: a\nspec: {program: p, slots_per_worker: 1, operators: [{id: s, parallelism: 1, source: true}]}\ncheckpoint_interval: 10ms\n",
			"checkpoint_interval 10ms is out of range: use 1s to 24h"},
		"no source": {"id: a\nspec: {program: p, slots_per_worker: 1, operators: [{id: s, parallelism: 1}]}\n",
			"spec.operators has no source"},
		"bad id":   {"id: -a\nspec: {program: p, slots_per_worker: 1, operators: [{id: s, parallelism: 1, source: true}]}\n", `job id "-a" is invalid`},
		"no id":    {"spec: {program: p, slots_per_worker: 1, operators: [{id: s, parallelism: 1, source: true}]}\n", "id is missing"},
		"empty":    {"\n", "is empty"},
		"two docs": {"id: a\n---\nid: b\n", "more than one YAML document"},
		"wrong type": {"id: a\nspec: {program: p, slots_per_worker: two, operators: [{id: s, parallelism: 1, source: true}]}\n",
			"cannot unmarshal"},
		"parallelism of unknown operator": {"id: a\nspec: {program: p, slots_per_worker: 1, operators: [{id: s, parallelism: 1, source: true}]}\nparallelism: {x: 2}\n",
			`parallelism names operator "x"`},
		"several problems": {"id: a\nspec: {program: p, slots_per_worker: 1, operators: [{id: s, parallelism: 1, source: true}]}\nttl: 1y\nrestart_policy: {allowed_restarts: -5}\n",
			`ttl "1y" is not a duration`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.expect(h.run("create", "-f", writeFile(t, c.file)), ExitUsage, c.want)
			if n := len(h.api.sent()); n != 0 {
				t.Errorf("%d requests sent for a bad file", n)
			}
		})
	}
	h := newHarness(t)
	h.expect(h.run("create"), ExitUsage, "create needs a job file")
	h.expect(h.run("create", "-f", "/no/such/file.yaml"), ExitUsage, "cannot read the job file")
}

func TestListTableAndJSON(t *testing.T) {
	h := newHarness(t)
	h.expect(h.run("list"), ExitOK)
	r := h.run("list")
	if !strings.Contains(r.stdout, "no jobs") {
		t.Errorf("empty list says %q", r.stdout)
	}
	h.createDemo()
	h.running()
	raw := strings.Replace(mustRead(t, demoFile), "id: demo", "id: other", 1)
	h.expect(h.run("create", "-f", writeFile(t, raw)), ExitOK)

	r = h.run("list")
	h.expect(r, ExitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("list table:\n%s", r.stdout)
	}
	for _, want := range []string{"ID", "STATE", "EPOCH"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("header %q lacks %s", lines[0], want)
		}
	}
	if f := strings.Fields(lines[1]); f[0] != "demo" || f[1] != "Running" || f[2] != "20s" || f[3] != "2" || f[4] != "1" || f[5] != "3" || f[6] != "15s" ||
		f[7] != "7s" || f[8] != "1520/1480" || !strings.Contains(lines[1], "50s ago, internal: worker w-1 timed out") {
		t.Errorf("demo row = %q", lines[1])
	}
	for _, want := range []string{"HB AGE", "REC/S", "LAST ERROR"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("header %q lacks %s", lines[0], want)
		}
	}
	if f := strings.Fields(lines[2]); f[0] != "other" || f[1] != statePending {
		t.Errorf("other row = %q", lines[2])
	}

	r = h.run("list", "-o", "json")
	h.expect(r, ExitOK)
	var out struct {
		Jobs []map[string]any `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	if len(out.Jobs) != 2 || out.Jobs[0]["state"] != "Running" || out.Jobs[0]["last_ready_epoch"] != float64(3) || out.Jobs[1]["last_ready_epoch"] != float64(0) {
		t.Errorf("list JSON = %v", out.Jobs)
	}
	demo := out.Jobs[0]
	for k, want := range map[string]any{
		"last_ready_at": "2026-11-29T12:00:14.2Z", "last_heartbeat_at": "2026-11-29T12:00:23Z", "heartbeat_age_seconds": 7.0,
		"records_in_per_sec": 1520.5, "records_out_per_sec": 1480.0, "records_per_second": 1520.5, "health_taken_at": "2026-11-29T12:00:27Z",
	} {
		if demo[k] != want {
			t.Errorf("list JSON %s = %v, want %v", k, demo[k], want)
		}
	}
	if le, _ := demo["last_error"].(map[string]any); le["at"] != "2026-11-29T11:59:40Z" {
		t.Errorf("list JSON last_error = %v", demo["last_error"])
	}
	// The other job has no status yet: its health fields are null, not 0.
	for _, k := range []string{"last_heartbeat_at", "heartbeat_age_seconds", "records_in_per_sec", "last_ready_at"} {
		if v, ok := out.Jobs[1][k]; !ok || v != nil {
			t.Errorf("pending job's %s = %v (present %v), want null", k, v, ok)
		}
	}
}

// list and watch read every job with one request per page of the list,
// never one per job.
func TestListAndWatchMakeOneRequestPerPage(t *testing.T) {
	h := newHarness(t)
	raw := mustRead(t, demoFile)
	for i := range 130 {
		h.expect(h.run("create", "-f", writeFile(t, strings.Replace(raw, "id: demo", fmt.Sprintf("id: job-%03d", i), 1))), ExitOK)
	}
	h.api.setStatus("job-129", client.Status{State: "Running", RunID: 1, LastReadyEpoch: 9,
		Health: &client.Health{HeartbeatAt: h.now.Add(-2 * time.Second), RecordsInPerSec: 10, RecordsOutPerSec: 10, TakenAt: h.now}})
	gets := func() (n int) {
		for _, r := range h.api.sent() {
			if r.Method == "GET" {
				n++
			}
		}
		return n
	}
	before := gets()
	r := h.run("list", "-o", "json")
	h.expect(r, ExitOK)
	if n := gets() - before; n != 2 {
		t.Errorf("list of 130 jobs made %d requests, want 2 (pages of 100)", n)
	}
	var out struct {
		Jobs []map[string]any `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.Jobs) != 130 {
		t.Fatalf("listed %d jobs (%v), want 130", len(out.Jobs), err)
	}
	if last := out.Jobs[129]; last["id"] != "job-129" || last["state"] != "Running" || last["last_ready_epoch"] != 9.0 || last["heartbeat_age_seconds"] != 2.0 {
		t.Errorf("the last page's job = %v", last)
	}

	// Each poll of the watch reads the first page, then the second.
	seen := len(h.api.sent())
	h.expect(h.run("watch", "--interval", "200ms", "--for", "2s", "-o", "json"), ExitOK)
	var firsts, seconds int
	for _, r := range h.api.sent()[seen:] {
		switch {
		case r.Method != "GET" || r.Path != "/jobs":
			t.Errorf("watch made %s %s: one request per job", r.Method, r.Path)
		case strings.Contains(r.Query, "page_token=job-099"):
			seconds++
		case !strings.Contains(r.Query, "page_token"):
			firsts++
		default:
			t.Errorf("watch asked for page %q", r.Query)
		}
	}
	if firsts == 0 || seconds < firsts-1 || seconds > firsts {
		t.Errorf("watch read the first page %d times and the second %d times, want both once per poll", firsts, seconds)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestListFitsTheTerminal(t *testing.T) {
	h := newHarness(t)
	h.createDemo()
	h.api.setStatus("demo", client.Status{State: "Recovering", RunID: 3, Restarts: 2,
		LastError: &client.Failure{Domain: "user", Message: strings.Repeat("task map-1 failed: division by zero; ", 5)}})
	h.tty, h.width = true, 80
	r := h.run("list")
	h.expect(r, ExitOK)
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if n := len([]rune(l)); n > 80 {
			t.Errorf("line of %d columns on an 80-column terminal: %q", n, l)
		}
	}
	if !strings.Contains(r.stdout, "…") {
		t.Errorf("the long error was not cut:\n%s", r.stdout)
	}
}

func TestGetTableAndJSON(t *testing.T) {
	h := newHarness(t)
	h.createDemo()
	h.running()
	r := h.run("get", "demo")
	h.expect(r, ExitOK)
	for _, want := range []string{"State           Running for 20s", "Run             2", "Last ready      epoch 3, 15s ago", "Checkpoints     every 2s",
		"Heartbeat       7s ago (the least recently heard worker)", "Records/s       1520/1480 (in/out)", "Health as of    3s ago",
		"Last error      50s ago, internal: worker w-1 timed out",
		"source=2 (source), map=2, sink=2 (committing); 2 slots per worker", "EPOCH", "in_progress"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("get lacks %q:\n%s", want, r.stdout)
		}
	}
	r = h.run("get", "demo", "-o", "json")
	h.expect(r, ExitOK)
	var v map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatal(err)
	}
	if v["state"] != "Running" || v["last_ready_epoch"] != float64(3) || v["run_id"] != float64(2) || v["restarts"] != float64(1) ||
		v["heartbeat_age_seconds"] != 7.0 || v["records_in_per_sec"] != 1520.5 || v["last_ready_at"] != "2026-11-29T12:00:14.2Z" {
		t.Errorf("get JSON = %v", v)
	}
	if _, ok := v["config"].(map[string]any)["spec"]; !ok {
		t.Errorf("get JSON lacks the config: %v", v)
	}
	h.expect(h.run("get", "nope"), ExitRefused, "No such job (404)", "weirctl list")
	h.expect(h.run("get"), ExitUsage, "get needs ID", "Run 'weirctl get --help' for usage.")
	h.expect(h.run("get", "a", "b"), ExitUsage, "get takes 1 argument(s)")
}

func TestStopSendsTheModeWithIfMatch(t *testing.T) {
	h := newHarness(t)
	h.createDemo()
	h.running()
	r := h.run("stop", "demo")
	h.expect(r, ExitOK)
	if !strings.Contains(r.stdout, "stop (checkpoint) requested (version 1 → 2)") {
		t.Errorf("stdout = %q", r.stdout)
	}
	last := h.api.sent()[len(h.api.sent())-1]
	if last.Method != "PATCH" || last.IfMatch != `"1"` || last.Body["stop"] != "checkpoint" || len(last.Body) != 1 {
		t.Errorf("request = %+v", last)
	}
	r = h.run("stop", "demo", "--mode", "force", "-o", "json")
	h.expect(r, ExitOK)
	var v map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v["stop"] != "force" {
		t.Errorf("stop JSON = %v (%v)", v, err)
	}
	r = h.run("stop", "demo", "--mode", "force")
	h.expect(r, ExitOK)
	if !strings.Contains(r.stdout, "nothing to change") {
		t.Errorf("stdout = %q", r.stdout)
	}
	n := len(h.api.sent())
	h.expect(h.run("stop", "demo", "--mode", "later"), ExitUsage, `--mode "later" is not a stop mode: use checkpoint, graceful, immediate, force`)
	h.expect(h.run("stop", "demo", "--mod", "force"), ExitUsage, "unknown flag: --mod")
	if len(h.api.sent()) != n {
		t.Error("a usage error sent requests")
	}
}

func TestRestartClearsAStop(t *testing.T) {
	h := newHarness(t)
	h.createDemo()
	h.expect(h.run("restart", "demo"), ExitOK)
	last := h.api.sent()[len(h.api.sent())-1]
	if last.Body["restart"] != "safe" || last.Body["stop"] != nil {
		t.Errorf("restart body = %v", last.Body)
	}
	h.expect(h.run("stop", "demo"), ExitOK)
	h.expect(h.run("restart", "demo", "--force"), ExitOK)
	last = h.api.sent()[len(h.api.sent())-1]
	if last.Body["restart"] != "force" || last.Body["stop"] != "none" {
		t.Errorf("restart --force of a stopped job: body = %v", last.Body)
	}
}

func TestScale(t *testing.T) {
	h := newHarness(t)
	h.createDemo()
	r := h.run("scale", "demo", "map=4", "sink=3")
	h.expect(r, ExitOK)
	if !strings.Contains(r.stdout, "rescale to map=4 sink=3 requested") {
		t.Errorf("stdout = %q", r.stdout)
	}
	last := h.api.sent()[len(h.api.sent())-1]
	p := last.Body["parallelism"].(map[string]any)
	if p["map"] != float64(4) || p["sink"] != float64(3) || last.IfMatch != `"1"` {
		t.Errorf("scale request = %+v", last)
	}
	r = h.run("scale", "demo", "map=4")
	h.expect(r, ExitOK)
	if !strings.Contains(r.stdout, "nothing to change") {
		t.Errorf("a scale to the same parallelism: %q", r.stdout)
	}
	n := len(h.api.sent())
	h.expect(h.run("scale", "demo", "mapp=4"), ExitUsage, `job demo has no operator "mapp": its operators are source, map, sink`)
	h.expect(h.run("scale", "demo"), ExitUsage, "scale needs a job ID and at least one OPERATOR=N")
	h.expect(h.run("scale", "demo", "map:4"), ExitUsage, `"map:4" is not OPERATOR=N`)
	h.expect(h.run("scale", "demo", "map=0"), ExitUsage, "from 1 to 4096")
	h.expect(h.run("scale", "demo", "map=2", "map=3"), ExitUsage, "named twice")
	for _, req := range h.api.sent()[n:] {
		if req.Method != "GET" {
			t.Errorf("a refused scale sent %s", req.Method)
		}
	}
}

func TestSet(t *testing.T) {
	h := newHarness(t)
	h.createDemo()
	r := h.run("set", "demo", "--checkpoint-interval", "30s", "--ttl", "2h", "--allowed-restarts", "-1", "--healthy-duration", "5m")
	h.expect(r, ExitOK)
	last := h.api.sent()[len(h.api.sent())-1]
	rp := last.Body["restart_policy"].(map[string]any)
	if last.Body["checkpoint_interval"] != "30s" || last.Body["ttl"] != "2h0m0s" || rp["allowed_restarts"] != float64(-1) || rp["healthy_duration"] != "5m0s" {
		t.Errorf("set body = %v", last.Body)
	}
	h.expect(h.run("set", "demo", "--ttl", "none"), ExitOK)
	last = h.api.sent()[len(h.api.sent())-1]
	if v, ok := last.Body["ttl"]; !ok || v != nil {
		t.Errorf("--ttl none sent %v, want ttl: null", last.Body)
	}
	r = h.run("get", "demo", "-o", "json")
	if !strings.Contains(r.stdout, `"checkpoint_interval": "30s"`) || strings.Contains(r.stdout, `"ttl"`) {
		t.Errorf("after set:\n%s", r.stdout)
	}
	n := len(h.api.sent())
	h.expect(h.run("set", "demo"), ExitUsage, "set needs at least one of")
	h.expect(h.run("set", "demo", "--checkpoint-interval", "100ms"), ExitUsage, "--checkpoint-interval 100ms is out of range")
	h.expect(h.run("set", "demo", "--ttl", "soon"), ExitUsage, `--ttl "soon" is not a duration`, "or none to remove it")
	h.expect(h.run("set", "demo", "--allowed-restarts", "-2"), ExitUsage, "use -1 for unlimited")
	h.expect(h.run("set", "demo", "--allowed-restarts", "x"), ExitUsage, "invalid argument")
	if len(h.api.sent()) != n {
		t.Error("a usage error sent requests")
	}
}

func TestDelete(t *testing.T) {
	h := newHarness(t)
	h.createDemo()
	h.running()
	h.expect(h.run("delete", "demo"), ExitRefused, "Job not at rest (409)", "weirctl stop demo")
	h.api.setStatus("demo", client.Status{State: "Stopped", RunID: 2})
	r := h.run("delete", "demo")
	h.expect(r, ExitOK)
	if r.stdout != "job demo deleted\n" {
		t.Errorf("stdout = %q", r.stdout)
	}
	last := h.api.sent()[len(h.api.sent())-1]
	if last.Method != "DELETE" || last.IfMatch != `"1"` {
		t.Errorf("delete request = %+v", last)
	}
	h.expect(h.run("delete", "demo"), ExitRefused, "No such job (404)")
}

// TestStaleVersionShowsWhatChanged has another writer change the job
// between weirctl's read and its write.
func TestStaleVersionShowsWhatChanged(t *testing.T) {
	h := newHarness(t)
	h.createDemo()
	h.running()
	h.api.before = func(r *http.Request) {
		if r.Method == http.MethodPatch || r.Method == http.MethodDelete {
			h.api.before = nil
			h.api.change("demo", map[string]any{"stop": "graceful", "checkpoint_interval": "5s"})
		}
	}
	r := h.run("scale", "demo", "map=4")
	h.expect(r, ExitConflict,
		"job demo was changed by someone else after weirctl read it at version 1; nothing was changed.",
		"It is now at version 2",
		"stop: none → graceful",
		"stop reason: operator: PATCH stop=graceful",
		"checkpoint interval: 2s → 5s",
		"weirctl get demo")
	if strings.Contains(r.stderr, "parallelism") {
		t.Errorf("the refused change is shown as made:\n%s", r.stderr)
	}
	j := h.api.jobs["demo"]
	if j.Config.Parallelism["map"] != 0 {
		t.Error("the stale scale was applied")
	}

	h.api.setStatus("demo", client.Status{State: "Stopped"})
	h.api.before = func(r *http.Request) {
		if r.Method == http.MethodDelete {
			h.api.before = nil
			h.api.change("demo", map[string]any{"restart": "force"})
		}
	}
	h.expect(h.run("delete", "demo"), ExitConflict, "restart requested (force)")
}

func TestNetworkAndServerTrouble(t *testing.T) {
	h := newHarness(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	h.url = srv.URL
	h.expect(h.run("list"), ExitUnavailable, "connection refused")

	h = newHarness(t)
	h.api.fail = 500
	h.expect(h.run("get", "demo"), ExitUnavailable, "Internal error (500)")

	h = newHarness(t)
	h.url = ""
	h.expect(h.run("list"), ExitUsage, "no API URL: pass --api URL or set WEIR_API_URL")
	h.expect(h.run("list", "--api", "ftp://x"), ExitUsage, "is not an http:// or https:// URL")

	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	h.expect(h.run("list", "--api", slow.URL, "--timeout", "50ms"), ExitUnavailable, "Client.Timeout")

	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html>hello</html>"))
	}))
	defer page.Close()
	h.expect(h.run("list", "--api", page.URL), ExitFailed, "not a weir API answer", "is the URL the config API's?")
}

func TestUsageErrors(t *testing.T) {
	h := newHarness(t)
	h.expect(h.run(), ExitUsage, "no command given")
	h.expect(h.run("frobnicate"), ExitUsage, `unknown command "frobnicate" for "weirctl"`)
	h.expect(h.run("list", "-o", "yaml"), ExitUsage, `--output "yaml" is not a format: use table or json`)
	h.expect(h.run("list", "extra"), ExitUsage, "list takes 0 argument(s)")
	h.expect(h.run("watch", "a", "b"), ExitUsage, "give at most one ID")
	h.expect(h.run("watch", "--interval", "1ms"), ExitUsage, "--interval 1ms is too short")
	h.expect(h.run("list", "--sign", "sometimes"), ExitUsage, "--sign")
	if n := len(h.api.sent()); n != 0 {
		t.Errorf("usage errors sent %d requests", n)
	}
	r := h.run("--help")
	h.expect(r, ExitOK)
	for _, want := range []string{"Exit codes:", "4  someone else changed the job", "watch"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestWatchPlainLines(t *testing.T) {
	h := newHarness(t)
	h.createDemo()
	h.running()
	polls := 0
	h.api.before = func(r *http.Request) {
		polls++
		if polls == 3 {
			h.api.setStatus("demo", client.Status{State: "Recovering", RunID: 2, Restarts: 2, LastError: &client.Failure{Domain: "user", Message: "task map-1 failed"}})
		}
	}
	r := h.run("watch", "demo", "--interval", "100ms", "--for", "1500ms")
	h.expect(r, ExitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("want a line per change (2), got:\n%s", r.stdout)
	}
	if !strings.Contains(lines[0], `demo state=Running for=20s run=2 restarts=1 last_ready_epoch=3 epoch_age=15s heartbeat_age=7s records_per_s=1520/1480 stop=none last_error="50s ago, internal: worker w-1 timed out"`) {
		t.Errorf("line 1 = %q", lines[0])
	}
	if !strings.Contains(lines[1], `state=Recovering`) || !strings.Contains(lines[1], `last_error="user: task map-1 failed"`) {
		t.Errorf("line 2 = %q", lines[1])
	}
	if strings.Contains(r.stdout, "\x1b[") {
		t.Error("escape sequences in piped output")
	}
}

func TestWatchJSONLines(t *testing.T) {
	h := newHarness(t)
	h.createDemo()
	h.running()
	r := h.run("watch", "--interval", "100ms", "--for", "250ms", "-o", "json")
	h.expect(r, ExitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one JSON line, got:\n%s", r.stdout)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &v); err != nil || v["state"] != "Running" || v["last_ready_epoch"] != float64(3) ||
		v["heartbeat_age_seconds"] != 7.0 || v["records_out_per_sec"] != 1480.0 || v["last_ready_at"] != "2026-11-29T12:00:14.2Z" {
		t.Errorf("JSON line = %s (%v)", lines[0], err)
	}
}

func TestWatchRedrawsInPlaceOnATerminal(t *testing.T) {
	h := newHarness(t)
	h.createDemo()
	h.running()
	h.tty, h.width = true, 100
	r := h.run("watch", "--interval", "100ms", "--for", "600ms")
	h.expect(r, ExitOK)
	if n := strings.Count(r.stdout, "\x1b[J"); n < 2 {
		t.Fatalf("%d frames drawn, want 2 or more:\n%q", n, r.stdout)
	}
	// Every frame after the first backs up over the 4 lines of the one before.
	if !strings.Contains(r.stdout, "\x1b[4A\r") {
		t.Errorf("no redraw in place:\n%q", r.stdout)
	}
	for _, want := range []string{"HB AGE", "REC/S", "LAST ERROR", "Running", "Ctrl-C to stop", " 7s ", "1520/1480", "50s ago"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("frame lacks %q", want)
		}
	}
}

func TestWatchKeepsGoingWhileTheAPIIsDown(t *testing.T) {
	h := newHarness(t)
	h.createDemo()
	h.running()
	// Requests may overlap (one timed out is still being served when the
	// next arrives), so the hook counts and switches under the stub's lock.
	polls := 0
	h.api.before = func(*http.Request) {
		h.api.mu.Lock()
		defer h.api.mu.Unlock()
		polls++
		switch polls {
		case 2:
			h.api.fail = 503
		case 4:
			h.api.fail = 0
		}
	}
	r := h.run("watch", "demo", "--interval", "100ms", "--for", "2s")
	h.expect(r, ExitOK)
	for _, want := range []string{"state=Running", "error: Internal error (503)", "the API answers again"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("watch output lacks %q:\n%s", want, r.stdout)
		}
	}
	h.expect(h.run("watch", "nope", "--for", "1s"), ExitRefused, "No such job (404)")
}

func TestWatchEndsOnInterrupt(t *testing.T) {
	h := newHarness(t)
	h.createDemo()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := h.runCtx(ctx, "", "watch", "demo", "--interval", "100ms")
	h.expect(r, ExitOK)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("watch took %s to end after the interrupt", d)
	}
}

// TestSignsRequestsToAWS checks that requests to an API Gateway host carry
// a SigV4 signature for execute-api in the URL's region.
func TestSignsRequestsToAWS(t *testing.T) {
	h := newHarness(t)
	h.createDemo()
	var out, errOut bytes.Buffer
	local := h.url
	code := Run(context.Background(), []string{"get", "demo", "--api", "https://abc123.execute-api.eu-west-1.amazonaws.com/"}, Env{
		Stdout: &out, Stderr: &errOut,
		HTTP: &http.Client{Transport: redirect(local)},
		AWS: func(context.Context) (aws.CredentialsProvider, string, error) {
			return credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""), "us-east-1", nil
		},
	})
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	auth := h.api.sent()[len(h.api.sent())-1].Auth
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") || !strings.Contains(auth, "/eu-west-1/execute-api/aws4_request") {
		t.Errorf("Authorization = %q", auth)
	}

	code = Run(context.Background(), []string{"get", "demo", "--api", "https://abc123.execute-api.eu-west-1.amazonaws.com"}, Env{
		Stdout: &out, Stderr: &errOut,
		HTTP: &http.Client{Transport: redirect(local)},
		AWS: func(context.Context) (aws.CredentialsProvider, string, error) {
			return aws.AnonymousCredentials{}, "", errNoCreds
		},
	})
	if code != ExitUsage || !strings.Contains(errOut.String(), "no AWS credentials to sign the request") {
		t.Errorf("without credentials: exit %d, %s", code, errOut.String())
	}
}

var errNoCreds = &client.CredentialsError{Err: context.DeadlineExceeded}

// redirect sends every request to base, keeping its path.
type redirect string

func (r redirect) RoundTrip(req *http.Request) (*http.Response, error) {
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host = "http", strings.TrimPrefix(string(r), "http://")
	out.Host = ""
	return http.DefaultTransport.RoundTrip(out)
}

package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/cmd/weirctl/internal/client"
	"github.com/weirstream/weir/infra/awstest"
)

// liveAPI is the local config API server (cmd/weir-api) on the emulator,
// on a stack of its own, behind a proxy that lets a test act between
// weirctl's requests.
type liveAPI struct {
	url string
	// table is the stack's jobs table, where a test plays the controller.
	table string
	mu    sync.Mutex
	// before runs before a request is passed on.
	before func(r *http.Request)
}

func (l *liveAPI) setBefore(f func(r *http.Request)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.before = f
}

// moduleRoot is the repository's root, where go.mod is.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// The binaries are built once for all the live tests.
var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds weir-resources and weir-api from this tree.
func binaries(t *testing.T, root string) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "weirctl-live-"); binErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/weir-resources", "./cmd/weir-api")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

// startLiveAPI creates a stack's resources from template.yaml with
// weir-resources and serves the config API on them with weir-api, both
// built from this tree, as make run does.
func startLiveAPI(t *testing.T) *liveAPI {
	t.Helper()
	awstest.Config(t) // skips without WEIR_INTEGRATION=1
	root := moduleRoot(t)
	bin := binaries(t, root)
	stack := awstest.Name(t, "weirctl")

	create := exec.Command(filepath.Join(bin, "weir-resources"), "create", "--stack", stack, "--template", filepath.Join(root, "template.yaml"))
	var stderr strings.Builder
	create.Stderr = &stderr
	out, err := create.Output()
	if err != nil {
		t.Fatalf("weir-resources create: %v\n%s", err, stderr.String())
	}
	t.Cleanup(func() {
		del := exec.Command(filepath.Join(bin, "weir-resources"), "delete", "--stack", stack, "--template", filepath.Join(root, "template.yaml"))
		if out, err := del.CombinedOutput(); err != nil {
			t.Logf("weir-resources delete: %v\n%s", err, out)
		}
	})
	env := os.Environ()
	table := ""
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		line = strings.ReplaceAll(line, "'", "")
		env = append(env, line)
		if v, ok := strings.CutPrefix(line, "WEIR_JOBS_TABLE="); ok {
			table = v
		}
	}
	if table == "" {
		t.Fatalf("weir-resources gave no WEIR_JOBS_TABLE:\n%s", out)
	}

	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	api := exec.Command(filepath.Join(bin, "weir-api"), "-addr", addr)
	api.Env = env
	logs, err := os.Create(filepath.Join(t.TempDir(), "api.log"))
	if err != nil {
		t.Fatal(err)
	}
	api.Stdout, api.Stderr = logs, logs
	if err := api.Start(); err != nil {
		t.Fatalf("start weir-api: %v", err)
	}
	t.Cleanup(func() {
		_ = api.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = api.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = api.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("weir-api log:\n%s", b)
		}
	})
	target := &url.URL{Scheme: "http", Host: addr}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(target.String() + "/jobs")
		if err == nil {
			_ = resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logs.Name())
			t.Fatalf("weir-api did not answer at %s: %v\n%s", target, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}

	l := &liveAPI{table: table}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		before := l.before
		l.mu.Unlock()
		if before != nil {
			before(r)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	l.url = srv.URL
	return l
}

func newLiveHarness(t *testing.T) (*harness, *liveAPI) {
	api := startLiveAPI(t)
	return &harness{t: t, url: api.url, now: time.Now()}, api
}

func (h *harness) getJSON(id string) map[string]any {
	h.t.Helper()
	r := h.run("get", id, "-o", "json")
	h.expect(r, ExitOK)
	var v map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		h.t.Fatalf("get -o json is not JSON: %v\n%s", err, r.stdout)
	}
	return v
}

// TestLiveEveryCommand drives a job through every command against the
// config API on the emulator. No controller runs: the job stays Pending,
// which is what lets it be deleted at the end.
func TestLiveEveryCommand(t *testing.T) {
	h, _ := newLiveHarness(t)

	r := h.run("create", "-f", demoFile)
	h.expect(r, ExitOK)
	if !strings.Contains(r.stdout, "job demo created (version 1)") {
		t.Errorf("create said %q", r.stdout)
	}
	h.expect(h.run("create", "-f", demoFile), ExitRefused, "Job exists (409)", "weirctl get demo")
	other := strings.Replace(mustRead(t, demoFile), "id: demo", "id: other", 1)
	r = h.run("create", "-f", writeFile(t, other), "-o", "json")
	h.expect(r, ExitOK)
	var created map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || created["id"] != "other" || created["state"] != statePending {
		t.Errorf("create -o json = %s (%v)", r.stdout, err)
	}

	r = h.run("list")
	h.expect(r, ExitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "demo ") || !strings.HasPrefix(lines[2], "other ") || !strings.Contains(lines[1], statePending) {
		t.Errorf("list:\n%s", r.stdout)
	}
	r = h.run("list", "-o", "json")
	h.expect(r, ExitOK)
	var list struct {
		Jobs []map[string]any `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Jobs) != 2 {
		t.Fatalf("list -o json: %v\n%s", err, r.stdout)
	}
	for _, j := range list.Jobs {
		if _, ok := j["last_ready_epoch"]; !ok || j["state"] != statePending {
			t.Errorf("list -o json job = %v", j)
		}
	}

	r = h.run("get", "demo")
	h.expect(r, ExitOK)
	for _, want := range []string{"State           Pending", "Checkpoints     every 2s", "source=2 (source), map=2, sink=2 (committing)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("get lacks %q:\n%s", want, r.stdout)
		}
	}

	h.expect(h.run("set", "demo", "--checkpoint-interval", "30s", "--ttl", "2h", "--allowed-restarts", "5", "--healthy-duration", "1m"), ExitOK)
	cfg := h.getJSON("demo")["config"].(map[string]any)
	rp := cfg["restart_policy"].(map[string]any)
	if cfg["checkpoint_interval"] != "30s" || cfg["ttl"] != "2h0m0s" || rp["allowed_restarts"] != float64(5) || rp["healthy_duration"] != "1m0s" {
		t.Errorf("after set: %v", cfg)
	}
	h.expect(h.run("set", "demo", "--ttl", "none"), ExitOK)
	if cfg := h.getJSON("demo")["config"].(map[string]any); cfg["ttl"] != nil {
		t.Errorf("ttl after --ttl none = %v", cfg["ttl"])
	}

	h.expect(h.run("scale", "demo", "map=4"), ExitOK)
	if p := h.getJSON("demo")["config"].(map[string]any)["parallelism"].(map[string]any); p["map"] != float64(4) {
		t.Errorf("parallelism after scale = %v", p)
	}
	h.expect(h.run("scale", "demo", "nope=2"), ExitUsage, `job demo has no operator "nope"`)

	h.expect(h.run("stop", "demo"), ExitOK)
	if v := h.getJSON("demo"); v["stop"] != "checkpoint" || !strings.Contains(fmt.Sprint(v["config"].(map[string]any)["stop_reason"]), "checkpoint") {
		t.Errorf("after stop: stop = %v, config = %v", v["stop"], v["config"])
	}
	h.expect(h.run("restart", "demo", "--force"), ExitOK)
	if cfg := h.getJSON("demo")["config"].(map[string]any); cfg["stop"] != "none" || cfg["restart_mode"] != "force" || cfg["restart_nonce"] == nil {
		t.Errorf("after restart --force: %v", cfg)
	}

	r = h.run("watch", "demo", "--interval", "100ms", "--for", "400ms")
	h.expect(r, ExitOK)
	if !strings.Contains(r.stdout, "demo state=Pending") || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("watch printed:\n%s", r.stdout)
	}

	h.expect(h.run("delete", "other"), ExitOK)
	h.expect(h.run("get", "other"), ExitRefused, "No such job (404)")
	h.expect(h.run("delete", "demo", "-o", "json"), ExitOK)
	r = h.run("list", "-o", "json")
	if !strings.Contains(r.stdout, `"jobs": []`) {
		t.Errorf("after deleting both: %s", r.stdout)
	}
}

// TestLiveStaleVersion has another operator change the job between
// weirctl's read and its write: the API answers 412 and weirctl shows
// what changed and changes nothing.
func TestLiveStaleVersion(t *testing.T) {
	h, api := newLiveHarness(t)
	h.expect(h.run("create", "-f", demoFile), ExitOK)
	other, err := client.New(client.Options{BaseURL: api.url})
	if err != nil {
		t.Fatal(err)
	}
	api.setBefore(func(r *http.Request) {
		if r.Method != http.MethodPatch {
			return
		}
		api.setBefore(nil)
		ctx := context.Background()
		_, etag, err := other.Get(ctx, "demo")
		if err != nil {
			t.Errorf("other writer: %v", err)
			return
		}
		mode, interval := "graceful", "5s"
		if _, err := other.Patch(ctx, "demo", etag, client.Patch{Stop: &mode, CheckpointInterval: &interval}); err != nil {
			t.Errorf("other writer: %v", err)
		}
	})
	r := h.run("scale", "demo", "map=4")
	h.expect(r, ExitConflict,
		"job demo was changed by someone else after weirctl read it at version 1; nothing was changed.",
		"It is now at version 2",
		"stop: none → graceful",
		"checkpoint interval: 2s → 5s")
	v := h.getJSON("demo")
	if p, ok := v["config"].(map[string]any)["parallelism"]; ok && p != nil {
		t.Errorf("the refused scale was applied: parallelism = %v", p)
	}
	if v["version"] != float64(2) {
		t.Errorf("version = %v, want 2", v["version"])
	}
}

// TestLiveRefusals checks the API's own refusals and weirctl's usage
// errors on the live server.
func TestLiveRefusals(t *testing.T) {
	h, _ := newLiveHarness(t)
	h.expect(h.run("get", "missing"), ExitRefused, "No such job (404)", "weirctl list")
	h.expect(h.run("stop", "missing"), ExitRefused, "No such job (404)")
	h.expect(h.run("get", "bad/id"), ExitRefused)
	h.expect(h.run("create", "-f", writeFile(t, "id: x\n")), ExitUsage, "is not a valid job")
	h.expect(h.run("stop", "x", "--mode", "soon"), ExitUsage, "is not a stop mode")
}

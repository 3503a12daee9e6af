package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store/memstore"
	"github.com/weirstream/weir/functions/configapi/httpapi"
	"github.com/weirstream/weir/functions/jobs"
)

// timers records the TTL timers the API sets.
type timers struct {
	mu  sync.Mutex
	at  map[job.ID]time.Time
	ops int
}

func (f *timers) Set(_ context.Context, id job.ID, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.at[id] = at
	f.ops++
	return nil
}

func (f *timers) Clear(_ context.Context, id job.ID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.at, id)
	f.ops++
	return nil
}

func (f *timers) get(id job.ID) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	at, ok := f.at[id]
	return at, ok
}

type env struct {
	store  *memstore.Store
	timers *timers
	srv    *httptest.Server
	h      http.Handler
	now    time.Time
}

func setup(t *testing.T) *env {
	t.Helper()
	e := &env{store: memstore.New(), timers: &timers{at: map[job.ID]time.Time{}}, now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	svc, err := jobs.New(jobs.Deps{Store: e.store, Timers: e.timers, Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.New(svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

const spec = `{"operators":[{"id":"src","parallelism":2,"source":true},{"id":"sink","parallelism":1}],"slots_per_worker":2,"program":"wordcount:v1"}`

func createBody(id string) string {
	return `{"id":"` + id + `","spec":` + spec + `,"checkpoint_interval":"30s","ttl":"1h"}`
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (e *env) do(t *testing.T, method, path, body string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := response{status: res.StatusCode, header: res.Header, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			t.Fatalf("%s %s: body %q is not JSON: %v", method, path, raw, err)
		}
	}
	return r
}

func (e *env) create(t *testing.T, id string) response {
	t.Helper()
	r := e.do(t, "POST", "/jobs", createBody(id))
	if r.status != 201 {
		t.Fatalf("create %s: %d %s", id, r.status, r.raw)
	}
	return r
}

func TestAJobsLife(t *testing.T) {
	e := setup(t)
	r := e.create(t, "wordcount")
	if r.header.Get("ETag") != `"1"` || r.header.Get("Location") != "/jobs/wordcount" {
		t.Errorf("create headers: ETag %q, Location %q", r.header.Get("ETag"), r.header.Get("Location"))
	}
	cfg := r.body["config"].(map[string]any)
	if cfg["checkpoint_interval"] != "30s" || cfg["ttl"] != "1h0m0s" || cfg["stop"] != "none" {
		t.Errorf("created config = %v", cfg)
	}
	if at, ok := e.timers.get("wordcount"); !ok || !at.Equal(e.now.Add(time.Hour)) {
		t.Errorf("TTL timer = %v, %v; want an hour from now (the job has not started)", at, ok)
	}

	r = e.do(t, "GET", "/jobs/wordcount", "")
	if r.status != 200 || r.header.Get("ETag") != `"1"` || r.body["status"] != nil {
		t.Fatalf("get: %d %s", r.status, r.raw)
	}

	r = e.do(t, "PATCH", "/jobs/wordcount", `{"parallelism":{"src":4},"checkpoint_interval":"1m","restart_policy":{"allowed_restarts":-1}}`, "If-Match", `"1"`)
	if r.status != 200 || r.header.Get("ETag") != `"2"` {
		t.Fatalf("patch: %d %s", r.status, r.raw)
	}
	cfg = r.body["config"].(map[string]any)
	if cfg["checkpoint_interval"] != "1m0s" || cfg["parallelism"].(map[string]any)["src"] != float64(4) ||
		cfg["restart_policy"].(map[string]any)["allowed_restarts"] != float64(-1) ||
		cfg["restart_policy"].(map[string]any)["healthy_duration"] != "2m0s" {
		t.Errorf("patched config = %v", cfg)
	}

	r = e.do(t, "PATCH", "/jobs/wordcount", `{"restart":"force","ttl":null}`, "If-Match", `"2"`)
	if r.status != 200 {
		t.Fatalf("restart: %d %s", r.status, r.raw)
	}
	cfg = r.body["config"].(map[string]any)
	if cfg["restart_mode"] != "force" || cfg["restart_nonce"] == "" || cfg["ttl"] != nil {
		t.Errorf("restarted config = %v", cfg)
	}
	if _, ok := e.timers.get("wordcount"); ok {
		t.Error("TTL cleared but its timer is still set")
	}

	// Running: not deletable.
	if _, err := e.store.PutStatus(t.Context(), 1, job.Status{JobID: "wordcount", State: job.Running, StartedAt: e.now}); err != nil {
		t.Fatal(err)
	}
	r = e.do(t, "DELETE", "/jobs/wordcount", "")
	if r.status != 409 || !strings.Contains(r.body["detail"].(string), "stop it first") {
		t.Errorf("delete while running: %d %s", r.status, r.raw)
	}
	r = e.do(t, "PATCH", "/jobs/wordcount", `{"stop":"checkpoint"}`, "If-Match", `"3"`)
	if r.status != 200 || r.body["config"].(map[string]any)["stop_reason"] != "operator: PATCH stop=checkpoint" {
		t.Fatalf("stop: %d %s", r.status, r.raw)
	}
	if _, err := e.store.PutStatus(t.Context(), 1, job.Status{JobID: "wordcount", Version: 1, State: job.Stopped, StartedAt: e.now}); err != nil {
		t.Fatal(err)
	}
	r = e.do(t, "GET", "/jobs/wordcount", "")
	if st := r.body["status"].(map[string]any); st["state"] != "Stopped" {
		t.Errorf("status = %v", st)
	}
	r = e.do(t, "DELETE", "/jobs/wordcount", "", "If-Match", `"4"`)
	if r.status != 204 {
		t.Fatalf("delete at rest: %d %s", r.status, r.raw)
	}
	if r = e.do(t, "GET", "/jobs/wordcount", ""); r.status != 404 {
		t.Errorf("get after delete: %d", r.status)
	}
}

func TestListPages(t *testing.T) {
	e := setup(t)
	for _, id := range []string{"a", "b", "c"} {
		e.create(t, id)
	}
	var ids []string
	token := ""
	for range 3 {
		path := "/jobs?limit=2"
		if token != "" {
			path += "&page_token=" + token
		}
		r := e.do(t, "GET", path, "")
		if r.status != 200 {
			t.Fatalf("list: %d %s", r.status, r.raw)
		}
		for _, j := range r.body["jobs"].([]any) {
			ids = append(ids, j.(map[string]any)["id"].(string))
		}
		next, _ := r.body["next_page_token"].(string)
		if next == "" {
			break
		}
		token = next
	}
	if strings.Join(ids, ",") != "a,b,c" {
		t.Errorf("listed %v, want a,b,c", ids)
	}
}

// Two operators PATCH with the same If-Match: exactly one wins, the others
// are told the version moved.
func TestConcurrentPatchesWithOneVersionHaveOneWinner(t *testing.T) {
	e := setup(t)
	e.create(t, "race")
	const n = 8
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body := `{"parallelism":{"src":` + string(rune('1'+i)) + `}}`
			codes <- e.do(t, "PATCH", "/jobs/race", body, "If-Match", `"1"`).status
		})
	}
	wg.Wait()
	close(codes)
	won := 0
	for c := range codes {
		switch c {
		case 200:
			won++
		case 412:
		default:
			t.Errorf("status %d, want 200 or 412", c)
		}
	}
	if won != 1 {
		t.Errorf("%d PATCHes won, want exactly 1", won)
	}
	if r := e.do(t, "GET", "/jobs/race", ""); r.header.Get("ETag") != `"2"` {
		t.Errorf("ETag after the race = %s, want \"2\"", r.header.Get("ETag"))
	}
}

// Every bad request gets a 4xx problem that says what to fix, and changes
// nothing: the store counts no write and the job reads back as it was.
func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	big := `{"id":"big","spec":{"operators":[{"id":"src","parallelism":1,"source":true}],"slots_per_worker":1,"program":"` + strings.Repeat("x", httpapi.MaxBodyBytes) + `"}}`
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		mention                  string
	}{
		// POST /jobs
		{"malformed JSON", "POST", "/jobs", `{"id":"a",`, nil, 400, "body"},
		{"not an object", "POST", "/jobs", `[1,2]`, nil, 400, "/"},
		{"empty body", "POST", "/jobs", ``, nil, 400, "required"},
		{"missing id", "POST", "/jobs", `{"spec":` + spec + `}`, nil, 400, "id"},
		{"missing spec", "POST", "/jobs", `{"id":"a"}`, nil, 400, "spec"},
		{"bad id", "POST", "/jobs", `{"id":"-bad id","spec":` + spec + `}`, nil, 400, "/id"},
		{"id too long", "POST", "/jobs", `{"id":"` + strings.Repeat("a", 129) + `","spec":` + spec + `}`, nil, 400, "/id"},
		{"id wrong type", "POST", "/jobs", `{"id":7,"spec":` + spec + `}`, nil, 400, "/id"},
		{"unknown field", "POST", "/jobs", `{"id":"a","spec":` + spec + `,"colour":"red"}`, nil, 400, "colour"},
		{"unknown spec field", "POST", "/jobs", `{"id":"a","spec":{"operators":[{"id":"s","parallelism":1,"source":true}],"slots_per_worker":1,"program":"p","x":1}}`, nil, 400, "x"},
		{"no operators", "POST", "/jobs", `{"id":"a","spec":{"operators":[],"slots_per_worker":1,"program":"p"}}`, nil, 400, "/spec/operators"},
		{"parallelism zero", "POST", "/jobs", `{"id":"a","spec":{"operators":[{"id":"s","parallelism":0,"source":true}],"slots_per_worker":1,"program":"p"}}`, nil, 400, "parallelism"},
		{"parallelism too high", "POST", "/jobs", `{"id":"a","spec":{"operators":[{"id":"s","parallelism":5000,"source":true}],"slots_per_worker":1,"program":"p"}}`, nil, 400, "parallelism"},
		{"parallelism a string", "POST", "/jobs", `{"id":"a","spec":{"operators":[{"id":"s","parallelism":"2","source":true}],"slots_per_worker":1,"program":"p"}}`, nil, 400, "parallelism"},
		{"no source", "POST", "/jobs", `{"id":"a","spec":{"operators":[{"id":"s","parallelism":1}],"slots_per_worker":1,"program":"p"}}`, nil, 422, "source"},
		{"repeated operator", "POST", "/jobs", `{"id":"a","spec":{"operators":[{"id":"s","parallelism":1,"source":true},{"id":"s","parallelism":1}],"slots_per_worker":1,"program":"p"}}`, nil, 422, "repeated"},
		{"empty program", "POST", "/jobs", `{"id":"a","spec":{"operators":[{"id":"s","parallelism":1,"source":true}],"slots_per_worker":1,"program":""}}`, nil, 400, "program"},
		{"interval in nanoseconds", "POST", "/jobs", `{"id":"a","spec":` + spec + `,"checkpoint_interval":10000000000}`, nil, 400, "checkpoint_interval"},
		{"interval not a duration", "POST", "/jobs", `{"id":"a","spec":` + spec + `,"checkpoint_interval":"ten seconds"}`, nil, 400, "checkpoint_interval"},
		{"interval too short", "POST", "/jobs", `{"id":"a","spec":` + spec + `,"checkpoint_interval":"100ms"}`, nil, 422, "out of range"},
		{"interval too long", "POST", "/jobs", `{"id":"a","spec":` + spec + `,"checkpoint_interval":"48h"}`, nil, 422, "out of range"},
		{"ttl too long", "POST", "/jobs", `{"id":"a","spec":` + spec + `,"ttl":"9000h"}`, nil, 422, "out of range"},
		{"unknown stop mode", "POST", "/jobs", `{"id":"a","spec":` + spec + `,"stop":"later"}`, nil, 400, "stop"},
		{"parallelism of an unknown operator", "POST", "/jobs", `{"id":"a","spec":` + spec + `,"parallelism":{"nope":2}}`, nil, 422, "nope"},
		{"allowed restarts below -1", "POST", "/jobs", `{"id":"a","spec":` + spec + `,"restart_policy":{"allowed_restarts":-2}}`, nil, 400, "allowed_restarts"},
		{"two JSON values", "POST", "/jobs", createBody("a") + `{}`, nil, 400, "body"},
		{"wrong content type", "POST", "/jobs", createBody("a"), []string{"Content-Type", "text/plain"}, 415, "application/json"},
		{"body too large", "POST", "/jobs", big, nil, 413, "bytes"},
		{"existing id", "POST", "/jobs", createBody("existing"), nil, 409, "exists already"},
		// GET
		{"get unknown job", "GET", "/jobs/nope", "", nil, 404, "POST /jobs"},
		{"get bad id", "GET", "/jobs/-x", "", nil, 400, "id"},
		{"list limit zero", "GET", "/jobs?limit=0", "", nil, 400, "limit"},
		{"list limit not a number", "GET", "/jobs?limit=many", "", nil, 400, "limit"},
		{"list limit too high", "GET", "/jobs?limit=1000", "", nil, 400, "limit"},
		{"unknown path", "GET", "/jobs/existing/workers", "", nil, 404, "/jobs/{id}"},
		{"unknown method", "PUT", "/jobs/existing", createBody("existing"), nil, 405, "PATCH"},
		// PATCH
		{"patch without If-Match", "PATCH", "/jobs/existing", `{"stop":"force"}`, nil, 428, "If-Match"},
		{"patch with a stale If-Match", "PATCH", "/jobs/existing", `{"stop":"force"}`, []string{"If-Match", `"7"`}, 412, "version 1"},
		{"patch with a bad If-Match", "PATCH", "/jobs/existing", `{"stop":"force"}`, []string{"If-Match", `"abc"`}, 400, "If-Match"},
		{"patch with If-Match *", "PATCH", "/jobs/existing", `{"stop":"force"}`, []string{"If-Match", `*`}, 400, "If-Match"},
		{"patch nothing", "PATCH", "/jobs/existing", `{}`, []string{"If-Match", `"1"`}, 400, "/"},
		{"patch unknown field", "PATCH", "/jobs/existing", `{"spec":` + spec + `}`, []string{"If-Match", `"1"`}, 400, "spec"},
		{"patch unknown restart mode", "PATCH", "/jobs/existing", `{"restart":"gentle"}`, []string{"If-Match", `"1"`}, 400, "restart"},
		{"patch ttl a number", "PATCH", "/jobs/existing", `{"ttl":3600}`, []string{"If-Match", `"1"`}, 400, "ttl"},
		{"patch negative parallelism", "PATCH", "/jobs/existing", `{"parallelism":{"src":-1}}`, []string{"If-Match", `"1"`}, 400, "parallelism"},
		{"patch parallelism of an unknown operator", "PATCH", "/jobs/existing", `{"parallelism":{"nope":1}}`, []string{"If-Match", `"1"`}, 422, "nope"},
		{"patch healthy duration negative", "PATCH", "/jobs/existing", `{"restart_policy":{"healthy_duration":"-5m"}}`, []string{"If-Match", `"1"`}, 400, "healthy_duration"},
		{"patch unknown job", "PATCH", "/jobs/nope", `{"stop":"force"}`, []string{"If-Match", `"1"`}, 404, "nope"},
		// DELETE
		{"delete unknown job", "DELETE", "/jobs/nope", "", nil, 404, "nope"},
		{"delete with a stale If-Match", "DELETE", "/jobs/existing", "", []string{"If-Match", `"9"`}, 412, "version 1"},
	}
	if len(tests) < 30 {
		t.Fatalf("only %d bad-input cases", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t)
			e.create(t, "existing")
			before := e.do(t, "GET", "/jobs/existing", "").raw
			writes, timerOps := e.store.Writes(), e.timers.ops

			r := e.do(t, tt.method, tt.path, tt.body, tt.headers...)
			if r.status != tt.status {
				t.Errorf("status %d, want %d: %s", r.status, tt.status, r.raw)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q, want application/problem+json", ct)
			}
			detail, _ := r.body["detail"].(string)
			if !strings.Contains(detail, tt.mention) || r.body["title"] == "" || r.body["type"] == "" || r.body["status"] != float64(tt.status) {
				t.Errorf("problem %s does not mention %q", r.raw, tt.mention)
			}
			if e.store.Writes() != writes || e.timers.ops != timerOps {
				t.Errorf("bad input wrote: store writes %d -> %d, timer ops %d -> %d", writes, e.store.Writes(), timerOps, e.timers.ops)
			}
			if after := e.do(t, "GET", "/jobs/existing", "").raw; after != before {
				t.Errorf("job changed:\nbefore %s\nafter  %s", before, after)
			}
			for _, other := range []string{"a", "big"} {
				if r := e.do(t, "GET", "/jobs/"+other, ""); r.status != 404 {
					t.Errorf("job %s exists after a refused request", other)
				}
			}
		})
	}
}

func TestInternalErrorsDoNotLeakTheirText(t *testing.T) {
	e := setup(t)
	e.store.FailNext(errSecret)
	r := e.do(t, "GET", "/jobs/any", "")
	if r.status != 500 || strings.Contains(r.raw, "arn:aws") {
		t.Errorf("internal failure answered %d %s", r.status, r.raw)
	}
}

var errSecret = &secretError{}

type secretError struct{}

func (*secretError) Error() string { return "table arn:aws:dynamodb:us-east-1:123:table/x throttled" }

// Paths the API does not serve answer problem+json too, so clients can rely
// on one error format everywhere.
func TestUnknownPathsAnswerProblems(t *testing.T) {
	e := setup(t)
	for _, p := range []string{"/", "/other", "/jobs/a/b"} {
		r := e.do(t, "GET", p, "")
		if r.status != 404 || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %s: %d %s", p, r.status, r.header.Get("Content-Type"))
		}
	}
}

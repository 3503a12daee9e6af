package httpapi_test

import (
	"context"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/core/store/memstore"
	"github.com/weirstream/weir/functions/configapi/httpapi"
	"github.com/weirstream/weir/functions/jobs"
)

// perJob counts the reads of one job's records a list must not make.
type perJob struct {
	*memstore.Store
	reads atomic.Int64
}

func (p *perJob) GetStatus(ctx context.Context, id job.ID) (job.Status, error) {
	p.reads.Add(1)
	return p.Store.GetStatus(ctx, id)
}

func (p *perJob) GetConfig(ctx context.Context, id job.ID) (job.Config, error) {
	p.reads.Add(1)
	return p.Store.GetConfig(ctx, id)
}

func (p *perJob) ListCheckpoints(ctx context.Context, id job.ID) ([]job.Checkpoint, error) {
	p.reads.Add(1)
	return p.Store.ListCheckpoints(ctx, id)
}

// The list carries each job's status and health summary, read with the
// page: no read per job, so a client lists (and watches) every job with
// one request per page.
func TestListCarriesEachJobsStatus(t *testing.T) {
	e := setup(t)
	counted := &perJob{Store: e.store}
	svc, err := jobs.New(jobs.Deps{Store: counted, Timers: e.timers, Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.New(svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)

	for _, id := range []string{"a", "b", "c"} {
		e.create(t, id)
	}
	at := time.Date(2026, 11, 29, 11, 59, 0, 0, time.UTC)
	for _, st := range []job.Status{
		{JobID: "a", State: job.Running, RunID: 2, Restarts: 1, LastReadyEpoch: 41, LastReadyAt: at,
			Failure: &job.Failure{Message: "worker w-1 timed out", Domain: job.DomainInternal, At: at.Add(-time.Minute)},
			Health:  job.Health{HeartbeatAt: at.Add(-5 * time.Second), RecordsInPerSec: 1500.5, RecordsOutPerSec: 1400, TakenAt: at}},
		{JobID: "c", State: job.Scheduling, RunID: 1, Health: job.Health{TakenAt: at}},
	} {
		if _, err := e.store.PutStatus(t.Context(), 1, st); err != nil {
			t.Fatal(err)
		}
	}
	counted.reads.Store(0) // creating reads; listing must not
	var ids []string
	byID := map[string]map[string]any{}
	token, pages := "", 0
	for {
		path := "/jobs?limit=2"
		if token != "" {
			path += "&page_token=" + token
		}
		r := e.do(t, "GET", path, "")
		pages++
		if r.status != 200 {
			t.Fatalf("list: %d %s", r.status, r.raw)
		}
		for _, j := range r.body["jobs"].([]any) {
			m := j.(map[string]any)
			ids = append(ids, m["id"].(string))
			byID[m["id"].(string)] = m
		}
		token, _ = r.body["next_page_token"].(string)
		if token == "" {
			break
		}
	}
	if len(ids) != 3 || pages != 2 {
		t.Fatalf("listed %v in %d pages, want 3 jobs in 2", ids, pages)
	}
	if n := counted.reads.Load(); n != 0 {
		t.Errorf("the list read %d single-job records, want none", n)
	}

	a, _ := byID["a"]["status"].(map[string]any)
	if a == nil {
		t.Fatalf("job a listed without its status: %v", byID["a"])
	}
	if a["state"] != "Running" || a["last_ready_epoch"] != 41.0 || a["last_ready_at"] != "2026-11-29T11:59:00Z" || a["restarts"] != 1.0 {
		t.Errorf("job a's status = %v", a)
	}
	if le, _ := a["last_error"].(map[string]any); le["at"] != "2026-11-29T11:58:00Z" || le["domain"] != "internal" {
		t.Errorf("job a's last_error = %v", a["last_error"])
	}
	hl, _ := a["health"].(map[string]any)
	if hl["heartbeat_at"] != "2026-11-29T11:58:55Z" || hl["records_in_per_sec"] != 1500.5 || hl["records_out_per_sec"] != 1400.0 || hl["taken_at"] != "2026-11-29T11:59:00Z" {
		t.Errorf("job a's health = %v", hl)
	}
	if byID["b"]["status"] != nil {
		t.Errorf("job b has no status yet, listed with %v", byID["b"]["status"])
	}
	c, _ := byID["c"]["status"].(map[string]any)
	if hl, _ := c["health"].(map[string]any); hl == nil || hl["heartbeat_at"] != nil || c["last_ready_epoch"] != 0.0 {
		t.Errorf("job c (no worker heard yet) listed as %v", c)
	}
	// The single-job read shows the same summary.
	if r := e.do(t, "GET", "/jobs/a", ""); r.body["status"].(map[string]any)["health"].(map[string]any)["heartbeat_at"] != "2026-11-29T11:58:55Z" {
		t.Errorf("GET /jobs/a status = %v", r.body["status"])
	}
}

var _ jobs.Store = (*perJob)(nil)
var _ store.Catalog = (*perJob)(nil)

package cli

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weirstream/weir/cmd/weirctl/internal/client"
)

// apiStub is an in-memory server of the config API's contract
// (api/openapi.yaml) as far as weirctl uses it: ETags are config
// versions, PATCH needs If-Match (428 without, 412 when stale), DELETE
// refuses a job not at rest (409), the list carries each job's status
// (not its checkpoints) a page at a time, and
// errors are problem documents. Tests play the controller by setting a
// job's status and checkpoints.
type apiStub struct {
	mu       sync.Mutex
	jobs     map[string]*client.Job
	requests []stubRequest
	now      time.Time
	// before, when set, runs before a request is served (without the lock
	// held), so a test can change a job between weirctl's read and write.
	before func(r *http.Request)
	// fail, when non-zero, is the status every request is answered with.
	fail int
}

type stubRequest struct {
	Method, Path, Query, IfMatch, Auth string
	Body                               map[string]any
}

func newAPIStub() *apiStub {
	return &apiStub{jobs: map[string]*client.Job{}, now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
}

func (s *apiStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.before != nil {
		s.before(r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var body map[string]any
	if r.Body != nil {
		_ = json.NewDecoder(r.Body).Decode(&body)
	}
	s.requests = append(s.requests, stubRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, IfMatch: r.Header.Get("If-Match"), Auth: r.Header.Get("Authorization"), Body: body})
	if s.fail != 0 {
		problem(w, s.fail, "Internal error", "the request failed inside weir and was logged")
		return
	}
	id, hasID := strings.CutPrefix(r.URL.Path, "/jobs/")
	switch {
	case r.URL.Path == "/jobs" && r.Method == http.MethodPost:
		s.create(w, r, body)
	case r.URL.Path == "/jobs" && r.Method == http.MethodGet:
		s.list(w, r)
	case hasID && r.Method == http.MethodGet:
		if j, ok := s.jobs[id]; ok {
			writeJob(w, 200, j)
			return
		}
		problem(w, 404, "No such job", "there is no job "+id+": create it with POST /jobs")
	case hasID && r.Method == http.MethodPatch:
		s.patch(w, r, id, body)
	case hasID && r.Method == http.MethodDelete:
		s.delete(w, r, id)
	default:
		problem(w, 405, "Method not allowed", r.Method+" "+r.URL.Path)
	}
}

func (s *apiStub) create(w http.ResponseWriter, r *http.Request, body map[string]any) {
	if r.Header.Get("Content-Type") != "application/json" {
		problem(w, 415, "Unsupported media type", "send application/json")
		return
	}
	var in client.CreateJob
	raw, _ := json.Marshal(body)
	if err := json.Unmarshal(raw, &in); err != nil || in.ID == "" {
		problem(w, 400, "The request does not match the API", "/id: is required")
		return
	}
	if _, ok := s.jobs[in.ID]; ok {
		problem(w, 409, "Job exists", "job "+in.ID+" exists already: change it with PATCH /jobs/"+in.ID+", or pick another id")
		return
	}
	j := &client.Job{ID: in.ID, Version: 1, Checkpoints: []client.Checkpoint{}, Config: client.Config{
		Spec: in.Spec, Stop: "none", Parallelism: in.Parallelism, CheckpointInterval: "10s", TTL: in.TTL,
		RestartPolicy: client.RestartPolicy{AllowedRestarts: 20, HealthyDuration: "2m0s"}, UpdatedAt: s.now,
	}}
	if in.Stop != "" {
		j.Config.Stop = in.Stop
	}
	if in.CheckpointInterval != "" {
		j.Config.CheckpointInterval = in.CheckpointInterval
	}
	s.jobs[in.ID] = j
	w.Header().Set("Location", "/jobs/"+in.ID)
	writeJob(w, 201, j)
}

// list answers a page of jobs in id order, each with its status but no
// checkpoints, as the API does.
func (s *apiStub) list(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil {
		limit = n
	}
	after := r.URL.Query().Get("page_token")
	ids := slices.Sorted(maps.Keys(s.jobs))
	out := client.JobList{Jobs: []client.Job{}}
	for _, id := range ids {
		if id <= after {
			continue
		}
		if len(out.Jobs) == limit {
			out.NextPageToken = out.Jobs[len(out.Jobs)-1].ID
			break
		}
		j := s.jobs[id]
		out.Jobs = append(out.Jobs, client.Job{ID: j.ID, Version: j.Version, Config: j.Config, Status: j.Status, Checkpoints: []client.Checkpoint{}})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (s *apiStub) version(w http.ResponseWriter, r *http.Request, j *client.Job, required bool) bool {
	raw := r.Header.Get("If-Match")
	if raw == "" {
		if required {
			problem(w, 428, "If-Match required", "send If-Match with the ETag of your last GET of this job")
			return false
		}
		return true
	}
	v, err := strconv.ParseInt(strings.Trim(raw, `"`), 10, 64)
	if err != nil {
		problem(w, 400, "If-Match is not a version", raw)
		return false
	}
	if v != j.Version {
		problem(w, 412, "Stale version", fmt.Sprintf("job %s is at version %d, not %d: GET it again", j.ID, j.Version, v))
		return false
	}
	return true
}

func (s *apiStub) patch(w http.ResponseWriter, r *http.Request, id string, body map[string]any) {
	j, ok := s.jobs[id]
	if !ok {
		problem(w, 404, "No such job", "there is no job "+id)
		return
	}
	if !s.version(w, r, j, true) {
		return
	}
	if len(body) == 0 {
		problem(w, 400, "The request does not match the API", "/: the body needs at least one field")
		return
	}
	s.apply(j, body)
	writeJob(w, 200, j)
}

// apply changes j as PATCH does; tests use it too, as another writer.
func (s *apiStub) apply(j *client.Job, body map[string]any) {
	c := &j.Config
	if v, ok := body["stop"].(string); ok {
		c.Stop, c.StopReason = v, ""
		if v != "none" {
			c.StopReason = "operator: PATCH stop=" + v
		}
	}
	if v, ok := body["restart"].(string); ok {
		c.RestartMode, c.RestartNonce = v, fmt.Sprintf("nonce-%d", j.Version+1)
	}
	if v, ok := body["parallelism"].(map[string]any); ok {
		if c.Parallelism == nil {
			c.Parallelism = map[string]int{}
		}
		for op, n := range v {
			c.Parallelism[op] = int(n.(float64))
		}
	}
	if v, ok := body["checkpoint_interval"].(string); ok {
		c.CheckpointInterval = v
	}
	if v, ok := body["ttl"]; ok {
		c.TTL = ""
		if s, ok := v.(string); ok && s != "0s" {
			c.TTL = s
		}
	}
	if v, ok := body["restart_policy"].(map[string]any); ok {
		if n, ok := v["allowed_restarts"].(float64); ok {
			c.RestartPolicy.AllowedRestarts = int(n)
		}
		if d, ok := v["healthy_duration"].(string); ok {
			c.RestartPolicy.HealthyDuration = d
		}
	}
	j.Version++
	c.UpdatedAt = s.now
}

func (s *apiStub) delete(w http.ResponseWriter, r *http.Request, id string) {
	j, ok := s.jobs[id]
	if !ok {
		problem(w, 404, "No such job", "there is no job "+id)
		return
	}
	if !s.version(w, r, j, false) {
		return
	}
	if j.Status != nil && !terminal(j.Status.State) {
		problem(w, 409, "Job not at rest", fmt.Sprintf("job %s is %s: stop it first (PATCH {\"stop\": \"checkpoint\"}), wait until it is Stopped, then delete it", id, j.Status.State))
		return
	}
	delete(s.jobs, id)
	w.WriteHeader(204)
}

// setStatus plays the controller.
func (s *apiStub) setStatus(id string, st client.Status, cps ...client.Checkpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	j.Status = &st
	j.Checkpoints = append([]client.Checkpoint{}, cps...)
}

// change is another writer's PATCH.
func (s *apiStub) change(id string, body map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apply(s.jobs[id], body)
}

func (s *apiStub) sent() []stubRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]stubRequest(nil), s.requests...)
}

func writeJob(w http.ResponseWriter, status int, j *client.Job) {
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(j.Version, 10)))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(j)
}

func problem(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(client.Problem{Type: "urn:weir:problem:x", Title: title, Status: status, Detail: detail})
}

package httpapi_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store/memstore"
	"github.com/weirstream/weir/functions/configapi/httpapi"
	"github.com/weirstream/weir/functions/jobs"
)

// FuzzRequest sends arbitrary requests (method, path, If-Match, body) to
// the config API over an in-memory store that already holds a job. Whatever
// the request, the handler must not panic, must answer a status below 500
// (the store never fails here, so a 5xx is a bug), must explain every
// refusal as a problem+json body, and a refused request must change
// nothing.
func FuzzRequest(f *testing.F) {
	for _, s := range []struct {
		method, path, ifMatch, body string
	}{
		{"POST", "/jobs", "", createBody("orders")},
		{"POST", "/jobs", "", `{"id":"x","spec":{"operators":[]}}`},
		{"POST", "/jobs", "", `{"id":"x","spec":` + spec + `,"checkpoint_interval":"-1s"}`},
		{"POST", "/jobs/", "", `[]`},
		{"GET", "/jobs", "", ""},
		{"GET", "/jobs/existing", "", ""},
		{"GET", "/jobs/no%2Fsuch", "", ""},
		{"PATCH", "/jobs/existing", `"1"`, `{"stop":"force"}`},
		{"PATCH", "/jobs/existing", `"1"`, `{"parallelism":{"src":4096,"nope":1}}`},
		{"PATCH", "/jobs/existing", `W/"1"`, `{"restart_nonce":"n","restart_mode":"safe","ttl":"1h"}`},
		{"PATCH", "/jobs/existing", `"99999999999999999999"`, `{"checkpoint_interval":"10s"}`},
		{"PATCH", "/jobs/existing", "", `{"stop":"none"}`},
		{"DELETE", "/jobs/existing", "", ""},
		{"PUT", "/jobs/existing", "", `{}`},
		{"POST", "/jobs", "", "{\"id\":\"\xff\"}"},
	} {
		f.Add(s.method, s.path, s.ifMatch, []byte(s.body))
	}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	st := memstore.New()
	svc, err := jobs.New(jobs.Deps{Store: st, Timers: &timers{at: map[job.ID]time.Time{}}, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	h, err := httpapi.New(svc, nil)
	if err != nil {
		f.Fatal(err)
	}
	if code, body := send(h, "POST", "/jobs", "", []byte(createBody("existing"))); code != http.StatusCreated {
		f.Fatalf("seeding the store: %d %s", code, body)
	}
	f.Fuzz(func(t *testing.T, method, path, ifMatch string, body []byte) {
		if _, err := url.ParseRequestURI(path); err != nil || !validMethod(method) || !strings.HasPrefix(path, "/") ||
			strings.ContainsAny(path, " \r\n\t#?") || strings.ContainsAny(ifMatch, "\r\n") {
			return // not an HTTP request a client could send
		}
		_, before := send(h, "GET", "/jobs", "", nil)
		code, out := sendWith(h, method, path, ifMatch, body)
		if code >= 500 {
			t.Fatalf("%s %s (If-Match %q) answered %d: %s\nbody: %q", method, path, ifMatch, code, out.body, body)
		}
		if code >= 400 {
			if !strings.HasPrefix(out.contentType, "application/problem+json") || len(out.body) == 0 {
				t.Fatalf("%s %s answered %d without a problem+json body (%q): %s", method, path, code, out.contentType, out.body)
			}
			if _, after := send(h, "GET", "/jobs", "", nil); after != before {
				t.Fatalf("%s %s was refused (%d) but changed the jobs:\nbefore %s\nafter  %s", method, path, code, before, after)
			}
		}
	})
}

func validMethod(m string) bool {
	switch m {
	case "GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS":
		return true
	}
	return false
}

type answer struct {
	contentType string
	body        string
}

func send(h http.Handler, method, path, ifMatch string, body []byte) (int, string) {
	code, a := sendWith(h, method, path, ifMatch, body)
	return code, a.body
}

func sendWith(h http.Handler, method, path, ifMatch string, body []byte) (int, answer) {
	r := httptest.NewRequest(method, "http://api.invalid"+path, io.NopCloser(bytes.NewReader(body)))
	if len(body) > 0 {
		r.Header.Set("Content-Type", "application/json")
	}
	if ifMatch != "" {
		r.Header.Set("If-Match", ifMatch)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, answer{contentType: w.Header().Get("Content-Type"), body: w.Body.String()}
}

package cli

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/weirstream/weir/api"
)

// contract wraps the stub so that every request weirctl sends, and every
// answer the stub gives, is checked against api/openapi.yaml: weirctl
// speaks the contract, and the stub does not drift from it.
type contract struct {
	t    *testing.T
	doc  *openapi3.T
	next http.Handler

	mu       sync.Mutex
	problems []string
}

func newContract(t *testing.T, next http.Handler) *contract {
	t.Helper()
	doc, err := api.Load()
	if err != nil {
		t.Fatal(err)
	}
	c := &contract{t: t, doc: doc, next: next}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, p := range c.problems {
			t.Errorf("off the contract: %s", p)
		}
	})
	return c
}

func (c *contract) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.problems = append(c.problems, strings.TrimSpace(strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")))
}

func (c *contract) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tmpl, id := "/jobs", ""
	if rest, ok := strings.CutPrefix(r.URL.Path, "/jobs/"); ok {
		tmpl, id = "/jobs/{id}", rest
	}
	item := c.doc.Paths.Find(tmpl)
	op := item.GetOperation(r.Method)
	if op == nil {
		c.fail("%s %s is not an operation of the API", r.Method, r.URL.Path)
		c.next.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	params := map[string]string{}
	if id != "" {
		params["id"] = id
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    r.Clone(r.Context()),
		PathParams: params,
		Route:      &routers.Route{Spec: c.doc, Path: tmpl, PathItem: item, Method: r.Method, Operation: op},
		Options:    &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	in.Request.Body = io.NopCloser(bytes.NewReader(body))
	if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
		c.fail("request %s %s: %v", r.Method, r.URL, err)
	}
	rec := httptest.NewRecorder()
	c.next.ServeHTTP(rec, r)
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 rec.Code,
		Header:                 rec.Header(),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	out.SetBodyBytes(rec.Body.Bytes())
	// The stub plays failures the contract leaves to the gateway (5xx).
	if rec.Code < 500 {
		if err := openapi3filter.ValidateResponse(r.Context(), out); err != nil {
			c.fail("answer %d to %s %s: %v", rec.Code, r.Method, r.URL, err)
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// Package httpapi serves the config API (api/openapi.yaml) as a plain
// http.Handler: the Lambda adapter (lambda.go) and a local HTTP server
// serve the same code. Every request is validated against the OpenAPI
// document before anything is written, and every error is an RFC 9457
// problem that says what to fix.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/weirstream/weir/api"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/functions/jobs"
)

// MaxBodyBytes bounds a request body. A job's spec with the schema's
// maximum of operators fits well within it.
const MaxBodyBytes = 64 << 10

// Handler is the config API. It is safe for concurrent use.
type Handler struct {
	svc *jobs.Service
	doc *openapi3.T
	log *slog.Logger
}

// New returns the API over svc. log defaults to slog.Default().
func New(svc *jobs.Service, log *slog.Logger) (*Handler, error) {
	if svc == nil {
		return nil, errors.New("httpapi: the jobs service is nil")
	}
	doc, err := api.Load()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Handler{svc: svc, doc: doc, log: log}, nil
}

// ServeHTTP routes, validates and answers one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h.serve(w, r); err != nil {
		var p *Problem
		if !errors.As(err, &p) {
			p = h.internal(r, err)
		}
		writeProblem(w, r, p)
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) error {
	tmpl, id, ok := route(r.URL.Path)
	if !ok {
		return newProblem(404, typeNotFound, "No such resource", fmt.Sprintf("%s is not a path of this API: use /jobs or /jobs/{id}", r.URL.Path))
	}
	item := h.doc.Paths.Find(tmpl)
	op := item.GetOperation(r.Method)
	if op == nil {
		w.Header().Set("Allow", strings.Join(methods(item), ", "))
		return newProblem(405, typeMethod, "Method not allowed", fmt.Sprintf("%s does not take %s: use %s", tmpl, r.Method, strings.Join(methods(item), ", ")))
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	// A missing If-Match is its own answer (428), not a schema error.
	if op.OperationID == "patchJob" && strings.TrimSpace(r.Header.Get("If-Match")) == "" {
		_, err := ifMatch(r, true)
		return err
	}
	params := map[string]string{}
	if id != "" {
		params["id"] = id
	}
	if err := h.validate(r, body, tmpl, item, op, params); err != nil {
		return err
	}
	switch op.OperationID {
	case "createJob":
		return h.create(w, r, body)
	case "listJobs":
		return h.list(w, r)
	case "getJob":
		return h.get(w, r, job.ID(id))
	case "patchJob":
		return h.patch(w, r, job.ID(id), body)
	case "deleteJob":
		return h.delete(w, r, job.ID(id))
	}
	return fmt.Errorf("operation %s has no handler", op.OperationID)
}

// route maps a path to its template and job id.
func route(path string) (tmpl, id string, ok bool) {
	switch rest, found := strings.CutPrefix(path, "/jobs"); {
	case !found:
		return "", "", false
	case rest == "" || rest == "/":
		return "/jobs", "", true
	case strings.HasPrefix(rest, "/") && !strings.Contains(rest[1:], "/"):
		return "/jobs/{id}", rest[1:], true
	}
	return "", "", false
}

func methods(item *openapi3.PathItem) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete} {
		if item.GetOperation(m) != nil {
			out = append(out, m)
		}
	}
	return out
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, newProblem(413, typeTooLarge, "Request body too large", fmt.Sprintf("the body is over %d bytes: send a smaller spec", MaxBodyBytes))
	}
	if err != nil {
		return nil, newProblem(400, typeInvalidRequest, "The request body could not be read", err.Error())
	}
	return body, nil
}

// validate checks the request against the OpenAPI document.
func (h *Handler) validate(r *http.Request, body []byte, tmpl string, item *openapi3.PathItem, op *openapi3.Operation, params map[string]string) error {
	if op.RequestBody != nil && len(body) > 0 {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || op.RequestBody.Value.Content.Get(mt) == nil {
			return newProblem(415, typeUnsupportedMedia, "Unsupported media type", fmt.Sprintf("Content-Type %q is not accepted: send application/json", r.Header.Get("Content-Type")))
		}
	}
	req := r.Clone(r.Context())
	req.Body = io.NopCloser(bytes.NewReader(body))
	in := &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: params,
		Route:      &routers.Route{Spec: h.doc, Path: tmpl, PathItem: item, Method: r.Method, Operation: op},
		Options: &openapi3filter.Options{
			MultiError:         true,
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
		},
	}
	err := openapi3filter.ValidateRequest(r.Context(), in)
	if err == nil {
		return nil
	}
	return requestProblem(err)
}

// requestProblem turns the validator's errors into one problem with a
// pointer per mistake.
func requestProblem(err error) *Problem {
	p := newProblem(400, typeInvalidRequest, "The request does not match the API", "")
	var add func(err error, where, hint string)
	add = func(err error, where, hint string) {
		if multi, ok := err.(openapi3.MultiError); ok {
			for _, e := range multi {
				add(e, where, hint)
			}
			return
		}
		if reqErr, ok := err.(*openapi3filter.RequestError); ok {
			if prm := reqErr.Parameter; prm != nil {
				where = prm.In + " parameter " + prm.Name
				if prm.Description != "" {
					hint = " (" + prm.Description + ")"
				}
			}
			other := where
			if other == "" {
				other = "request body"
			}
			if reqErr.Err == nil || errors.Is(reqErr.Err, openapi3filter.ErrInvalidRequired) {
				detail := reqErr.Reason
				if reqErr.Err != nil {
					detail = "is required"
				}
				p.Errors = append(p.Errors, FieldError{Pointer: other, Detail: detail + hint})
				return
			}
			if _, isSchema := reqErr.Err.(*openapi3.SchemaError); !isSchema {
				if _, isMulti := reqErr.Err.(openapi3.MultiError); !isMulti {
					detail := strings.TrimSpace(reqErr.Reason + ": " + reqErr.Err.Error())
					if reqErr.RequestBody != nil && reqErr.Parameter == nil {
						detail = "is not valid JSON (" + reqErr.Err.Error() + "): send one JSON object"
					}
					p.Errors = append(p.Errors, FieldError{Pointer: other, Detail: detail + hint})
					return
				}
			}
			add(reqErr.Err, where, hint)
			return
		}
		var schemaErr *openapi3.SchemaError
		if errors.As(err, &schemaErr) {
			if ptr := schemaErr.JSONPointer(); len(ptr) > 0 {
				if where == "" {
					where = "/" + strings.Join(ptr, "/")
				} else {
					where += " /" + strings.Join(ptr, "/")
				}
			}
			if where == "" {
				where = "/"
			}
			detail := schemaErr.Reason
			// A pattern says little to a person; the schema's description
			// says what to write.
			if schemaErr.SchemaField == "pattern" && schemaErr.Schema != nil && schemaErr.Schema.Description != "" && hint == "" {
				detail = "does not have the right form: " + schemaErr.Schema.Description
			}
			p.Errors = append(p.Errors, FieldError{Pointer: where, Detail: detail + hint})
			return
		}
		if where == "" {
			where = "/"
		}
		p.Errors = append(p.Errors, FieldError{Pointer: where, Detail: err.Error()})
	}
	add(err, "", "")
	var parts []string
	for _, e := range p.Errors {
		parts = append(parts, e.Pointer+": "+e.Detail)
	}
	p.Detail = strings.Join(parts, "; ") + " (see api/openapi.yaml)"
	return p
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request, body []byte) error {
	var in createIn
	if err := decodeStrict(body, &in); err != nil {
		return err
	}
	cfg, err := in.config()
	if err != nil {
		return err
	}
	v, err := h.svc.Create(r.Context(), cfg)
	if err != nil {
		return h.domainProblem(r, err)
	}
	w.Header().Set("Location", "/jobs/"+string(v.Config.JobID))
	return writeJob(w, http.StatusCreated, v)
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) error {
	limit := 50
	if s := r.URL.Query().Get("limit"); s != "" {
		limit, _ = strconv.Atoi(s) // the schema has checked it
	}
	views, next, err := h.svc.List(r.Context(), job.ID(r.URL.Query().Get("page_token")), limit)
	if err != nil {
		return h.domainProblem(r, err)
	}
	out := listOut{Jobs: []jobOut{}, NextPageToken: string(next)}
	for _, v := range views {
		out.Jobs = append(out.Jobs, jobView(v))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request, id job.ID) error {
	v, err := h.svc.Get(r.Context(), id)
	if err != nil {
		return h.domainProblem(r, err)
	}
	return writeJob(w, http.StatusOK, v)
}

func (h *Handler) patch(w http.ResponseWriter, r *http.Request, id job.ID, body []byte) error {
	version, err := ifMatch(r, true)
	if err != nil {
		return err
	}
	var in patchIn
	if err := decodeStrict(body, &in); err != nil {
		return err
	}
	ch, err := in.change()
	if err != nil {
		return err
	}
	v, err := h.svc.Patch(r.Context(), id, version, ch)
	if err != nil {
		return h.domainProblem(r, err)
	}
	return writeJob(w, http.StatusOK, v)
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request, id job.ID) error {
	version, err := ifMatch(r, false)
	if err != nil {
		return err
	}
	if err := h.svc.Delete(r.Context(), id, version); err != nil {
		return h.domainProblem(r, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ifMatch reads the config version from If-Match; 0 when absent and not
// required.
func ifMatch(r *http.Request, required bool) (int64, error) {
	raw := strings.TrimSpace(r.Header.Get("If-Match"))
	if raw == "" {
		if required {
			return 0, newProblem(428, typeVersionRequired, "If-Match required", "send If-Match with the ETag of your last GET of this job, so a change made since is not overwritten")
		}
		return 0, nil
	}
	v, err := strconv.ParseInt(strings.Trim(raw, `"`), 10, 64)
	if err != nil || v < 1 || strings.HasPrefix(raw, "W/") {
		return 0, newProblem(400, typeInvalidRequest, "If-Match is not a version", fmt.Sprintf("If-Match %q is not an ETag this API gave: send the ETag header of your last GET, such as \"3\"", raw))
	}
	return v, nil
}

// domainProblem maps the service's errors to problems.
func (h *Handler) domainProblem(r *http.Request, err error) error {
	var conflict *store.ConflictError
	switch {
	case errors.Is(err, jobs.ErrInvalid):
		return newProblem(422, typeInvalidJob, "The job is not valid", strings.TrimPrefix(err.Error(), jobs.ErrInvalid.Error()+": "))
	case errors.Is(err, jobs.ErrExists):
		return newProblem(409, typeExists, "Job exists", strings.TrimPrefix(err.Error(), jobs.ErrExists.Error()+": "))
	case errors.Is(err, jobs.ErrNotAtRest):
		return newProblem(409, typeNotAtRest, "Job not at rest", strings.TrimPrefix(err.Error(), jobs.ErrNotAtRest.Error()+": "))
	case errors.As(err, &conflict):
		detail := fmt.Sprintf("job %s changed since you read it: If-Match names version %d", conflict.JobID, conflict.Expected)
		if conflict.Current >= 0 {
			detail = fmt.Sprintf("job %s is at version %d, not %d: GET it again, check your change still makes sense, and retry with If-Match: \"%d\"", conflict.JobID, conflict.Current, conflict.Expected, conflict.Current)
		}
		return newProblem(412, typeStaleVersion, "Stale version", detail)
	case errors.Is(err, store.ErrNotFound):
		return newProblem(404, typeNotFound, "No such job", fmt.Sprintf("there is no job %s: create it with POST /jobs", pathID(r)))
	}
	return h.internal(r, err)
}

func pathID(r *http.Request) string {
	_, id, _ := route(r.URL.Path)
	return id
}

// internal logs a failure and answers without its text, which may name
// tables or carry SDK details operators cannot act on.
func (h *Handler) internal(r *http.Request, err error) *Problem {
	h.log.ErrorContext(r.Context(), "config API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return newProblem(503, typeInternal, "Try again", "the request took too long and was abandoned; nothing may have been written: GET the job and retry")
	}
	return newProblem(500, typeInternal, "Internal error", "the request failed inside weir and was logged; GET the job to see whether it changed, then retry")
}

func writeJob(w http.ResponseWriter, status int, v jobs.View) error {
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(v.Config.Version, 10)))
	return writeJSON(w, status, jobView(v))
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// The header is out: an encoding failure can no longer become a problem.
	_ = json.NewEncoder(w).Encode(v)
	return nil
}

package httpapi

import (
	"encoding/json"
	"net/http"
)

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type     string       `json:"type"`
	Title    string       `json:"title"`
	Status   int          `json:"status"`
	Detail   string       `json:"detail"`
	Instance string       `json:"instance,omitempty"`
	Errors   []FieldError `json:"errors,omitempty"`
}

// FieldError points at the part of the request that was wrong.
type FieldError struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

// Problem types, one per kind of mistake; each names what to fix.
const (
	typeInvalidRequest   = "urn:weir:problem:invalid-request"
	typeInvalidJob       = "urn:weir:problem:invalid-job"
	typeNotFound         = "urn:weir:problem:not-found"
	typeMethod           = "urn:weir:problem:method-not-allowed"
	typeExists           = "urn:weir:problem:job-exists"
	typeNotAtRest        = "urn:weir:problem:job-not-at-rest"
	typeVersionRequired  = "urn:weir:problem:version-required"
	typeStaleVersion     = "urn:weir:problem:stale-version"
	typeTooLarge         = "urn:weir:problem:body-too-large"
	typeUnsupportedMedia = "urn:weir:problem:unsupported-media-type"
	typeInternal         = "urn:weir:problem:internal"
)

func newProblem(status int, typ, title, detail string) *Problem {
	return &Problem{Type: typ, Title: title, Status: status, Detail: detail}
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	p.Instance = r.URL.Path
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

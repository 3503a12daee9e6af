package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// APIError is a non-2xx answer of the API.
type APIError struct {
	Method, URL string
	Status      int
	Problem     Problem
}

func (e *APIError) Error() string {
	var b strings.Builder
	title := e.Problem.Title
	if title == "" {
		title = http.StatusText(e.Status)
	}
	fmt.Fprintf(&b, "%s (%d)", title, e.Status)
	if e.Problem.Detail != "" {
		b.WriteString(": " + e.Problem.Detail)
	}
	return b.String()
}

// Refused reports whether the API refused the request as asked (4xx):
// sending it again unchanged gets the same answer.
func (e *APIError) Refused() bool { return e.Status >= 400 && e.Status < 500 }

// IsStatus reports whether err is an *APIError with the given status.
func IsStatus(err error, status int) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == status
}

// NetworkError is a request that got no answer: the server is not
// listening, a time-out, a TLS or DNS failure.
type NetworkError struct {
	Method, URL string
	Err         error
}

func (e *NetworkError) Error() string {
	cause := e.Err
	// url.Error repeats the method and URL this message starts with.
	var ue *url.Error
	if errors.As(cause, &ue) {
		cause = ue.Err
	}
	if ue != nil && ue.Timeout() || errors.Is(cause, context.DeadlineExceeded) {
		return fmt.Sprintf("%s %s: no answer in time (%v)", e.Method, e.URL, cause)
	}
	return fmt.Sprintf("%s %s: %v", e.Method, e.URL, cause)
}

func (e *NetworkError) Unwrap() error { return e.Err }

// BadAnswerError is a 2xx answer that is not what the contract says.
type BadAnswerError struct {
	Method, URL string
	Status      int
	Err         error
}

func (e *BadAnswerError) Error() string {
	return fmt.Sprintf("%s %s answered %d with a body that is not a weir API answer (%v): is the URL the config API's?", e.Method, e.URL, e.Status, e.Err)
}

func (e *BadAnswerError) Unwrap() error { return e.Err }

// CredentialsError is a request that could not be signed.
type CredentialsError struct{ Err error }

func (e *CredentialsError) Error() string {
	return fmt.Sprintf("no AWS credentials to sign the request (%v): configure them as for the AWS CLI (AWS_PROFILE, aws sso login, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)", e.Err)
}

func (e *CredentialsError) Unwrap() error { return e.Err }

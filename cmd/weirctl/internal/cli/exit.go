package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/weirstream/weir/cmd/weirctl/internal/client"
)

// Exit codes. Scripts can tell a mistake of theirs (2) from a refusal of
// the API (3, 4) from trouble reaching it (5), where trying again may help.
const (
	ExitOK = 0
	// ExitFailed: anything else, such as an answer that is not the API's.
	ExitFailed = 1
	// ExitUsage: a bad command line or job file; nothing was sent.
	ExitUsage = 2
	// ExitRefused: the API refused the request (4xx other than 412): no
	// such job, a job that exists already, a value it does not accept.
	ExitRefused = 3
	// ExitConflict: someone else changed the job since weirctl read it
	// (412); nothing was changed.
	ExitConflict = 4
	// ExitUnavailable: no answer (connection refused, time-out, DNS, TLS)
	// or the API failed (5xx); nothing may have changed: look, then retry.
	ExitUnavailable = 5
	// ExitInterrupted: stopped by Ctrl-C before the command finished.
	ExitInterrupted = 130
)

// usageError is a mistake on the command line or in a job file.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// exitCode maps an error to the process's exit code.
func exitCode(err error) int {
	var (
		usage   *usageError
		stale   *staleError
		api     *client.APIError
		network *client.NetworkError
		creds   *client.CredentialsError
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &usage):
		return ExitUsage
	case errors.As(err, &stale):
		return ExitConflict
	case errors.As(err, &api) && api.Status == 412:
		return ExitConflict
	case errors.As(err, &api) && api.Refused():
		return ExitRefused
	case errors.As(err, &api):
		return ExitUnavailable
	case errors.As(err, &network):
		if errors.Is(err, context.Canceled) {
			return ExitInterrupted
		}
		return ExitUnavailable
	case errors.As(err, &creds):
		return ExitUsage
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	}
	return ExitFailed
}

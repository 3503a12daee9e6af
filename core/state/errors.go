package state

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/weirstream/weir/core/controller"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
)

// How the Machine treats an error a state returns:
//   - store.ErrFenced (or a status conflict): this controller no longer owns
//     the job; the Machine stops acting and returns the error.
//   - a *FatalError: the job fails (Failing), no retry.
//   - a *RecoverError, or the controller's worker time-out or checkpoint
//     failures: the job recovers (Recovering, which counts a restart).
//   - anything else is retryable: the same step is tried again with
//     exponential back-off, and after the state's retry limit the job
//     escalates (to Recovering, or to Failing on a stop path).

// FatalError fails the job without retrying.
type FatalError struct {
	Failure job.Failure
}

func (e *FatalError) Error() string { return e.Failure.Message }

// Fatal makes a FatalError.
func Fatal(domain job.ErrorDomain, format string, args ...any) error {
	return &FatalError{Failure: job.Failure{Message: fmt.Sprintf(format, args...), Domain: domain}}
}

// RecoverError sends the job to Recovering.
type RecoverError struct {
	Err    error
	Domain job.ErrorDomain
}

func (e *RecoverError) Error() string { return e.Err.Error() }
func (e *RecoverError) Unwrap() error { return e.Err }

// Recover makes a RecoverError.
func Recover(domain job.ErrorDomain, err error) error {
	return &RecoverError{Err: err, Domain: domain}
}

type errorClass int

const (
	classRetry errorClass = iota
	classRecover
	classFatal
	classLostOwnership
)

func classify(err error) errorClass {
	var fatal *FatalError
	var rec *RecoverError
	switch {
	case errors.Is(err, store.ErrFenced), errors.Is(err, store.ErrConflict):
		return classLostOwnership
	case errors.As(err, &fatal):
		return classFatal
	case errors.As(err, &rec),
		errors.Is(err, controller.ErrWorkerTimedOut),
		errors.Is(err, controller.ErrCheckpointsFailing):
		return classRecover
	}
	return classRetry
}

// failureOf describes err for the job's status.
func failureOf(err error) job.Failure {
	var fatal *FatalError
	if errors.As(err, &fatal) {
		return fatal.Failure
	}
	var rec *RecoverError
	if errors.As(err, &rec) && rec.Domain != "" {
		return job.Failure{Message: err.Error(), Domain: rec.Domain}
	}
	return job.Failure{Message: err.Error(), Domain: job.DomainInternal}
}

// Backoff is the wait before attempt n (1-based): initial doubling per
// attempt up to max, with equal jitter (half fixed, half random) so that
// many jobs failing together do not retry in lockstep.
func Backoff(n int, initial, max time.Duration, random func() float64) time.Duration {
	if n < 1 {
		n = 1
	}
	d := initial
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	if random == nil {
		random = rand.Float64
	}
	half := d / 2
	return half + time.Duration(random()*float64(d-half))
}

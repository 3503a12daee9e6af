package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/weirstream/weir/core/leader"
)

// readiness is what /readyz reports: ready as the leader, or as a standby
// that has reached the lease table; not ready while starting or while the
// lease table cannot be read.
type readiness struct {
	mu    sync.Mutex
	grant leader.Grant // the current tenure, nil as a standby
	// reached says the lease table answered since the last failure.
	reached bool
	lastErr error
}

// status returns whether the controller is ready, and why in words.
func (r *readiness) status() (bool, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.grant != nil {
		select {
		case <-r.grant.Lost():
			return true, "standby: the lease was lost or is being released"
		default:
			return true, fmt.Sprintf("leader (fence %d)", r.grant.Fence())
		}
	}
	switch {
	case r.reached:
		return true, "standby: waiting for the lease"
	case r.lastErr != nil:
		return false, "cannot read the lease table: " + r.lastErr.Error()
	default:
		return false, "starting: the lease table has not been read yet"
	}
}

func (r *readiness) set(g leader.Grant, reached bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.grant, r.reached, r.lastErr = g, reached, err
}

// trackedLease reports a lease's progress to a readiness. Before each
// campaign it reads the lease record once: a standby that has read it is
// ready, one that cannot is not, and the campaign is retried.
type trackedLease struct {
	inner leader.Lease
	probe func(context.Context) error
	r     *readiness
}

func (t trackedLease) Acquire(ctx context.Context) (leader.Grant, error) {
	if err := t.probe(ctx); err != nil {
		if ctx.Err() == nil {
			t.r.set(nil, false, err)
		}
		return nil, err
	}
	t.r.set(nil, true, nil)
	g, err := t.inner.Acquire(ctx)
	if err != nil {
		if ctx.Err() == nil {
			t.r.set(nil, false, err)
		}
		return nil, err
	}
	t.r.set(g, true, nil)
	return trackedGrant{Grant: g, r: t.r}, nil
}

// trackedGrant turns the controller back into a standby on Release.
type trackedGrant struct {
	leader.Grant
	r *readiness
}

func (g trackedGrant) Release(ctx context.Context) error {
	err := g.Grant.Release(ctx)
	g.r.set(nil, true, nil)
	return err
}

var _ leader.Grant = trackedGrant{}

// healthServer serves /healthz and /readyz.
type healthServer struct {
	srv *http.Server
	ln  net.Listener
}

// listenHealth binds addr at once, so a taken port stops start-up.
func listenHealth(addr string, r *readiness) (*healthServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on --health-addr %s: %w (choose a free port)", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ready, why := r.status()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = fmt.Fprintln(w, why)
	})
	return &healthServer{
		ln: ln,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 2 * time.Second,
			ReadTimeout:       5 * time.Second,
			WriteTimeout:      5 * time.Second,
			IdleTimeout:       30 * time.Second,
		},
	}, nil
}

// Addr is where the server listens (the real port when :0 was asked for).
func (h *healthServer) Addr() string { return h.ln.Addr().String() }

// run serves until ctx ends, then shuts down, giving open requests a
// moment to finish.
func (h *healthServer) run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- h.srv.Serve(h.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("health server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 100*time.Millisecond)
	defer cancel()
	if err := h.srv.Shutdown(sctx); err != nil {
		_ = h.srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("health server: %w", err)
	}
	return nil
}

// leading reports whether this controller holds the lease now.
func (r *readiness) leading() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.grant == nil {
		return false
	}
	select {
	case <-r.grant.Lost():
		return false
	default:
		return true
	}
}

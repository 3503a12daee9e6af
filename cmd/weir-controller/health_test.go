package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/leader/memlease"
	"github.com/weirstream/weir/core/manager"
	"github.com/weirstream/weir/core/store"
)

func TestReadinessFollowsTheLease(t *testing.T) {
	shared := memlease.New()
	r := &readiness{}
	var probeErr error
	var mu sync.Mutex
	probe := func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		return probeErr
	}
	want := func(ready bool, fragment string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			ok, why := r.status()
			if ok == ready && strings.Contains(why, fragment) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("readiness %v %q, want %v and %q", ok, why, ready, fragment)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	want(false, "starting")

	// Another controller holds the lease: this one is a ready standby.
	other, err := shared.Contender("other").Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = manager.RunAsLeader(ctx, trackedLease{inner: shared.Contender("me"), probe: probe, r: r}, clock.Real{}, nil,
			func(ctx context.Context, _ store.Fence) error { <-ctx.Done(); return nil })
	})
	defer func() { cancel(); wg.Wait() }()
	want(true, "standby")

	if err := other.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	want(true, "leader (fence 2)")

	// A lost lease makes it a standby again; a lease table it cannot
	// read makes it unready.
	mu.Lock()
	probeErr = errors.New("ResourceNotFoundException: no such table")
	mu.Unlock()
	shared.Expire()
	want(false, "cannot read the lease table: ResourceNotFoundException")
}

func TestHealthEndpoints(t *testing.T) {
	r := &readiness{}
	h, err := listenHealth("127.0.0.1:0", r)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = h.run(ctx) })
	defer func() {
		cancel()
		wg.Wait()
		if runErr != nil {
			t.Error(runErr)
		}
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + h.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Errorf("/readyz while starting: %d %q", code, body)
	}
	r.set(nil, true, nil)
	if code, body := get("/readyz"); code != http.StatusOK || !strings.Contains(body, "standby") {
		t.Errorf("/readyz as a standby: %d %q", code, body)
	}
	if _, err := listenHealth(h.Addr(), r); err == nil || !strings.Contains(err.Error(), "--health-addr") {
		t.Errorf("a taken port: %v, want an error naming --health-addr", err)
	}
}

package chaos

import (
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

type countingClient struct{ n atomic.Int64 }

func (c *countingClient) Do(*http.Request) (*http.Response, error) {
	c.n.Add(1)
	return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
}

// A paused controller's requests are held and sent when it resumes; one
// killed while paused sends nothing it held, as a process killed while
// stopped never sends what it was about to.
func TestGateHoldsWhilePausedAndDropsOnKill(t *testing.T) {
	base := &countingClient{}
	calm := &atomic.Bool{}
	calm.Store(true)
	g := &gate{owner: "c", direct: base, calm: calm}
	send := func() chan error {
		done := make(chan error, 1)
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1/", nil)
		go func() { _, err := g.Do(req); done <- err }()
		return done
	}
	waitHeld := func(n int64) {
		for deadline := time.Now().Add(5 * time.Second); g.held.Load() < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d requests held, want %d", g.held.Load(), n)
			}
		}
	}

	g.pause()
	held := send()
	waitHeld(1)
	g.resume()
	if err := <-held; err != nil || base.n.Load() != 1 {
		t.Fatalf("after resume: err %v, %d sent; want the held request sent", err, base.n.Load())
	}

	g.pause()
	held = send()
	waitHeld(2)
	g.kill()
	if err := <-held; !errors.Is(err, errKilled) {
		t.Fatalf("held request of a killed controller: err %v, want errKilled", err)
	}
	if n := base.n.Load(); n != 1 {
		t.Fatalf("%d requests reached AWS, want only the one sent before the kill", n)
	}
}

package manager

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/leader"
	"github.com/weirstream/weir/core/store"
)

// RunAsLeader campaigns for the lease and, while it is held, runs work
// under the grant's fence. Losing the lease cancels the work at once and
// waits for it to end before campaigning again, so two tenures never
// overlap in this process. It returns when ctx ends, after releasing the
// lease so a successor need not wait for it to expire.
func RunAsLeader(ctx context.Context, lease leader.Lease, clk clock.Clock, log *slog.Logger,
	work func(ctx context.Context, fence store.Fence) error) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	retry := time.Duration(0)
	for {
		grant, err := lease.Acquire(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			retry = min(max(2*retry, 500*time.Millisecond), 30*time.Second)
			log.Warn("could not campaign for the lease; will retry", "retry_in", retry.String(), "err", err)
			if !clock.Sleep(ctx, clk, retry) {
				return nil
			}
			continue
		}
		log.Info("lease acquired", "fence", int64(grant.Fence()))
		wctx, cancel := context.WithCancel(ctx)
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			select {
			case <-grant.Lost():
				log.Error("lease lost: stopping all leader work")
				cancel()
			case <-wctx.Done():
			}
		}()
		began := clk.Now()
		err = work(wctx, grant.Fence())
		cancel()
		<-stopped
		failed := err != nil && !errors.Is(err, context.Canceled)
		if failed {
			log.Warn("leader work ended", "err", err)
		}
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if rerr := grant.Release(rctx); rerr != nil {
			log.Warn("could not release the lease; it will expire", "err", rerr)
		}
		rcancel()
		if ctx.Err() != nil {
			return nil
		}
		// A tenure that failed at once would fail again at once: back off
		// before campaigning, so a broken dependency does not spin.
		if !failed || clk.Since(began) >= time.Minute {
			retry = 0
			continue
		}
		retry = min(max(2*retry, 500*time.Millisecond), 30*time.Second)
		log.Warn("campaigning again after a pause", "retry_in", retry.String())
		if !clock.Sleep(ctx, clk, retry) {
			return nil
		}
	}
}

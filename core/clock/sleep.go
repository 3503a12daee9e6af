package clock

import (
	"context"
	"time"
)

// Sleep waits d on c, or until ctx ends; it reports whether the whole d
// passed. Back-off and pacing loops use it so that a cancelled context
// stops them at once.
func Sleep(ctx context.Context, c Clock, d time.Duration) bool {
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

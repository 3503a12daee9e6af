package manager

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/inbox"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/core/state"
	"github.com/weirstream/weir/core/telemetry"
)

// discardInbox settles nothing: the benchmark drives dispatch directly.
type discardInbox struct{}

func (discardInbox) Receive(ctx context.Context) ([]inbox.Delivery, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (discardInbox) Ack(context.Context, []inbox.Delivery) error     { return nil }
func (discardInbox) Reject(context.Context, []inbox.Delivery) error  { return nil }
func (discardInbox) Release(context.Context, []inbox.Delivery) error { return nil }

// BenchmarkDispatchWithBlockedJob measures how long a worker message takes
// from the receive loop to its job's loop, across many jobs, with and
// without one job whose loop is stuck (it never takes a message). The
// stuck job's mailbox fills and its messages are handed back; the others'
// latency must not grow.
func BenchmarkDispatchWithBlockedJob(b *testing.B) {
	for _, blocked := range []bool{false, true} {
		b.Run(fmt.Sprintf("blocked=%v", blocked), func(b *testing.B) {
			benchDispatch(b, 200, blocked)
		})
	}
}

func benchDispatch(b *testing.B, jobs int, blocked bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t := &tenure{
		d:    Deps{Inbox: discardInbox{}, Log: slog.New(slog.DiscardHandler), Telemetry: telemetry.Nop{}},
		log:  slog.New(slog.DiscardHandler),
		jobs: map[job.ID]*jobSlot{},
		acks: newAckQueue(),
	}
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	ids := make([]job.ID, jobs)
	for i := range ids {
		ids[i] = job.ID("job-" + strconv.Itoa(i))
		s := t.slot(ids[i])
		if blocked && i == 0 {
			continue // its loop is stuck: nobody reads its mailbox
		}
		wg.Add(1)
		go func(mb *state.Mailbox) {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-mb.Wake():
				}
				for in, ok := mb.Next(); ok; in, ok = mb.Next() {
					d := time.Since(in.Env.SentAt)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
					in.Done()
				}
			}
		}(s.mb)
	}
	seq := uint64(0)
	batch := make([]inbox.Delivery, inbox.MaxBatch)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range batch {
			seq++
			id := ids[int(seq)%jobs]
			if blocked && j == 0 {
				id = ids[0]
			}
			body, err := protocol.Encode(&protocol.Envelope{
				V: protocol.Version, JobID: id, RunID: 1, WorkerID: "w-" + strconv.Itoa(j),
				Seq: seq, SentAt: time.Now(), Heartbeat: &protocol.Heartbeat{},
				Events: []protocol.Event{{Kind: protocol.NonFatalError, Error: "x"}},
			})
			if err != nil {
				b.Fatal(err)
			}
			batch[j] = inbox.Delivery{ID: strconv.FormatUint(seq, 10), Body: string(body), Handle: "h"}
		}
		t.dispatch(ctx, batch)
		if i%64 == 0 {
			t.acks.take()
		}
	}
	b.StopTimer()
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

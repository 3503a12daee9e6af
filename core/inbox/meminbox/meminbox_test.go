package meminbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/inbox"
)

func newInbox(t *testing.T, o Options) *Inbox {
	t.Helper()
	in, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func receive(t *testing.T, in *Inbox) []inbox.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ds, err := in.Receive(ctx)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return ds
}

func bodies(ds []inbox.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Body
	}
	return out
}

// waitFor polls cond; the deadline only guards against a hung test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// receiveAsync runs Receive in a goroutine the test owns: it ends when the
// test does (ctx is cancelled in Cleanup).
func receiveAsync(t *testing.T, in *Inbox) <-chan []inbox.Delivery {
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []inbox.Delivery, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ds, err := in.Receive(ctx)
		if err == nil {
			out <- ds
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return out
}

func TestSendReceiveAckInOrder(t *testing.T) {
	in := newInbox(t, Options{})
	for i := range 25 {
		in.Send(fmt.Appendf(nil, "msg-%02d", i))
	}
	var got []string
	handles := map[string]bool{}
	for _, want := range []int{10, 10, 5} {
		ds := receive(t, in)
		if len(ds) != want {
			t.Fatalf("batch of %d, want %d", len(ds), want)
		}
		for _, d := range ds {
			if d.Receives != 1 || handles[d.Handle] || d.ID == "" {
				t.Fatalf("delivery %+v: want a first receive with a fresh handle and an id", d)
			}
			handles[d.Handle] = true
		}
		got = append(got, bodies(ds)...)
		if err := in.Ack(context.Background(), ds); err != nil {
			t.Fatal(err)
		}
	}
	for i, b := range got {
		if b != fmt.Sprintf("msg-%02d", i) {
			t.Fatalf("message %d is %q: without Reorder delivery is in send order", i, b)
		}
	}
	if in.Len() != 0 {
		t.Fatalf("Len = %d after acking everything", in.Len())
	}
	st := in.Stats()
	if st.Sent != 25 || st.Receives != 3 || st.Delivered != 25 || st.Acked != 25 || st.AckCalls != 3 || st.Redelivered != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestBatchSizeOption(t *testing.T) {
	in := newInbox(t, Options{BatchSize: 3})
	for range 5 {
		in.Send([]byte("x"))
	}
	if n := len(receive(t, in)); n != 3 {
		t.Fatalf("batch of %d, want 3", n)
	}
}

func TestReceiveWaitsForASend(t *testing.T) {
	in := newInbox(t, Options{})
	got := receiveAsync(t, in)
	select {
	case ds := <-got:
		t.Fatalf("Receive returned %v from an empty inbox", ds)
	case <-time.After(time.Millisecond):
	}
	in.Send([]byte("hello"))
	select {
	case ds := <-got:
		if len(ds) != 1 || ds[0].Body != "hello" {
			t.Fatalf("got %v", bodies(ds))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Receive did not wake up for a sent message")
	}
}

func TestReceiveEndsWithContext(t *testing.T) {
	in := newInbox(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := in.Receive(ctx)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive after cancel = %v, want context.Canceled", err)
	}
	// A done context wins even over waiting messages.
	in.Send([]byte("x"))
	if _, err := in.Receive(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive with a done context = %v", err)
	}
	if err := in.Ack(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Ack with a done context = %v", err)
	}
}

func TestUnackedMessageComesBackAfterVisibilityTimeout(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_000, 0))
	in := newInbox(t, Options{Clock: clk, VisibilityTimeout: 30 * time.Second})
	in.Send([]byte("beat"))
	first := receive(t, in)
	if in.InFlight() != 1 {
		t.Fatalf("InFlight = %d, want 1", in.InFlight())
	}

	got := receiveAsync(t, in)
	waitFor(t, "Receive arms a timer for the visibility timeout", func() bool { return clk.Waiters() == 1 })
	clk.Advance(30*time.Second - time.Microsecond)
	select {
	case ds := <-got:
		t.Fatalf("message came back before its visibility timeout: %v", ds)
	default:
	}
	clk.Advance(time.Microsecond)
	var again []inbox.Delivery
	select {
	case again = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("message did not come back after its visibility timeout")
	}
	if again[0].ID != first[0].ID || again[0].Receives != 2 || again[0].Handle == first[0].Handle {
		t.Fatalf("redelivery %+v of %+v: want the same id, receive count 2 and a new handle", again[0], first[0])
	}

	// The first handle is stale: acking it deletes nothing, as on SQS.
	if err := in.Ack(context.Background(), first); err != nil {
		t.Fatalf("Ack with a stale handle: %v", err)
	}
	if in.Len() != 1 {
		t.Fatal("a stale handle deleted the message")
	}
	if err := in.Ack(context.Background(), again); err != nil {
		t.Fatal(err)
	}
	if in.Len() != 0 {
		t.Fatal("the latest handle did not delete the message")
	}
	if err := in.Ack(context.Background(), again); err != nil {
		t.Fatalf("acking twice: %v", err)
	}
	if st := in.Stats(); st.Redelivered != 1 || st.Acked != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestAckAfterVisibilityExpiredStillDeletes(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_000, 0))
	in := newInbox(t, Options{Clock: clk})
	in.Send([]byte("slow"))
	ds := receive(t, in)
	clk.Advance(time.Minute) // visible again, but nobody received it since
	if err := in.Ack(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	if in.Len() != 0 {
		t.Fatal("the latest handle did not delete the message after its visibility expired")
	}
}

func TestUnknownHandleIsAnError(t *testing.T) {
	in := newInbox(t, Options{})
	in.Send([]byte("x"))
	ds := receive(t, in)
	for _, h := range []string{"", "h-99", "h-01", "receipt"} {
		bad := inbox.Delivery{ID: ds[0].ID, Handle: h}
		if err := in.Ack(context.Background(), []inbox.Delivery{ds[0], bad}); err == nil {
			t.Fatalf("Ack accepted handle %q", h)
		}
		if err := in.Reject(context.Background(), []inbox.Delivery{bad}); err == nil {
			t.Fatalf("Reject accepted handle %q", h)
		}
	}
	if in.Len() != 1 || in.Stats().Acked != 0 {
		t.Fatal("a batch with a bad handle was partly applied")
	}
}

func TestRejectedMessageIsDeadLetteredAfterMaxReceives(t *testing.T) {
	in := newInbox(t, Options{MaxReceives: 3})
	in.Send([]byte("garbage"))
	in.Send([]byte("fine"))
	for want := 1; want <= 3; want++ {
		ds := receive(t, in)
		var bad []inbox.Delivery
		for _, d := range ds {
			if d.Body == "garbage" {
				if d.Receives != want {
					t.Fatalf("receive count %d, want %d", d.Receives, want)
				}
				bad = append(bad, d)
			} else if err := in.Ack(context.Background(), []inbox.Delivery{d}); err != nil {
				t.Fatal(err)
			}
		}
		if len(bad) != 1 {
			t.Fatalf("receive %d: the rejected message was not visible again at once (%v)", want, bodies(ds))
		}
		if err := in.Reject(context.Background(), bad); err != nil {
			t.Fatal(err)
		}
	}
	// The next receive moves it to the dead-letter list instead of
	// delivering it, and finds nothing else.
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if ds, err := in.Receive(ctx); err == nil {
		t.Fatalf("delivered %v after maxReceiveCount", bodies(ds))
	}
	dead := in.Dead()
	if len(dead) != 1 || dead[0].Body != "garbage" || dead[0].Receives != 3 {
		t.Fatalf("dead letters = %+v", dead)
	}
	if in.Len() != 0 || in.Stats().DeadLettered != 1 || in.Stats().Rejected != 3 {
		t.Fatalf("Len %d, stats %+v", in.Len(), in.Stats())
	}
}

func TestNegativeMaxReceivesNeverDeadLetters(t *testing.T) {
	in := newInbox(t, Options{MaxReceives: -1})
	in.Send([]byte("x"))
	for range 2 * DefaultMaxReceives {
		if err := in.Reject(context.Background(), receive(t, in)); err != nil {
			t.Fatal(err)
		}
	}
	if len(in.Dead()) != 0 || in.Len() != 1 {
		t.Fatal("dead-lettered without a redrive policy")
	}
}

func TestDuplicatesAreAckedOneByOne(t *testing.T) {
	in := newInbox(t, Options{Duplicates: 1})
	id := in.Send([]byte("twice"))
	ds := receive(t, in)
	if len(ds) != 2 || ds[0].ID != id || ds[1].ID != id || ds[0].Handle == ds[1].Handle {
		t.Fatalf("deliveries %+v: want two copies of %s with their own handles", ds, id)
	}
	if err := in.Ack(context.Background(), ds[:1]); err != nil {
		t.Fatal(err)
	}
	if in.Len() != 1 {
		t.Fatal("acking one copy removed the other")
	}
}

func TestDuplicatesAndReorderAreRepeatable(t *testing.T) {
	run := func(seed uint64) []string {
		in := newInbox(t, Options{Duplicates: 0.3, Reorder: true, Seed: seed})
		for i := range 10 {
			in.Send(fmt.Appendf(nil, "%d", i))
		}
		var got []string
		for in.Len() > 0 {
			ds := receive(t, in)
			got = append(got, bodies(ds)...)
			if err := in.Ack(context.Background(), ds); err != nil {
				t.Fatal(err)
			}
		}
		return got
	}
	a, b := run(7), run(7)
	if !slices.Equal(a, b) {
		t.Fatalf("same seed, different deliveries:\n%v\n%v", a, b)
	}
	if len(a) <= 10 {
		t.Fatalf("no duplicates among %d deliveries with a 30%% chance", len(a))
	}
	inOrder := slices.Clone(a)
	slices.Sort(inOrder)
	if slices.Equal(a, inOrder) {
		t.Fatalf("Reorder kept send order: %v", a)
	}
	if c := run(8); slices.Equal(a, c) {
		t.Fatalf("different seeds, same deliveries: %v", a)
	}
}

func TestSentBodiesAreCopies(t *testing.T) {
	in := newInbox(t, Options{})
	body := []byte("orig")
	in.Send(body)
	body[0] = 'X'
	if got := receive(t, in)[0].Body; got != "orig" {
		t.Fatalf("body %q: the inbox shares memory with its callers", got)
	}
}

func TestFailNext(t *testing.T) {
	in := newInbox(t, Options{})
	in.Send([]byte("x"))
	boom := errors.New("throttled")
	in.FailNext(boom)
	if _, err := in.Receive(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Receive = %v, want the injected failure", err)
	}
	ds := receive(t, in)
	in.FailNext(boom)
	if err := in.Ack(context.Background(), ds); !errors.Is(err, boom) {
		t.Fatalf("Ack = %v, want the injected failure", err)
	}
	if in.Len() != 1 {
		t.Fatal("a failed Ack deleted the message")
	}
}

func TestOptionsAreChecked(t *testing.T) {
	for _, o := range []Options{
		{BatchSize: inbox.MaxBatch + 1},
		{BatchSize: -1},
		{Duplicates: 1.5},
		{VisibilityTimeout: -time.Second},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

func TestConcurrentReceiversSeeEachMessageOnce(t *testing.T) {
	in := newInbox(t, Options{})
	const n = 500
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for {
				ds, err := in.Receive(ctx)
				if err != nil {
					return
				}
				mu.Lock()
				for _, d := range ds {
					seen[d.Body]++
				}
				mu.Unlock()
				if err := in.Ack(ctx, ds); err != nil && ctx.Err() == nil {
					t.Error(err)
				}
			}
		})
	}
	for i := range n {
		in.Send(fmt.Appendf(nil, "%d", i))
	}
	waitFor(t, "every message is acked", func() bool { return in.Stats().Acked == n })
	cancel()
	wg.Wait()
	for body, c := range seen {
		if c != 1 {
			t.Fatalf("message %s delivered %d times within its visibility timeout", body, c)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d messages delivered, want %d", len(seen), n)
	}
}

// BenchmarkReceiveAck sends, receives and acks one batch at a time while
// 50,000 other messages sit in flight: each operation must cost the same
// as with an empty queue (no scan of the whole queue).
func BenchmarkReceiveAck(b *testing.B) {
	in, err := New(Options{Clock: clock.NewFake(time.Unix(0, 0))})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	body := []byte(`{"v":2}`)
	for range 50_000 {
		in.Send(body)
	}
	for range 50_000 / inbox.MaxBatch {
		if _, err := in.Receive(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		for range inbox.MaxBatch {
			in.Send(body)
		}
		ds, err := in.Receive(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := in.Ack(ctx, ds); err != nil {
			b.Fatal(err)
		}
	}
}

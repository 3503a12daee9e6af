package dynamo_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/leader"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/core/store/storetest"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/faults"
	"github.com/weirstream/weir/infra/resources"
)

// network sits between a DynamoDB client and the emulator and fails
// requests on demand: a partition (nothing gets through), or writes whose
// answer is lost after DynamoDB applied them.
type network struct {
	base dynamodb.HTTPClient

	mu          sync.Mutex
	partitioned bool
	failWrites  bool
	dropAnswers int // of UpdateItem, which then did happen
}

func (f *network) Do(r *http.Request) (*http.Response, error) {
	op := r.Header.Get("X-Amz-Target")
	write := strings.HasSuffix(op, ".UpdateItem")
	f.mu.Lock()
	partitioned, failWrite := f.partitioned, f.failWrites && write
	drop := write && f.dropAnswers > 0
	if drop {
		f.dropAnswers--
	}
	f.mu.Unlock()
	if partitioned || failWrite {
		return nil, errors.New("test: network partition")
	}
	resp, err := f.base.Do(r)
	if drop && err == nil {
		_ = resp.Body.Close()
		return nil, errors.New("test: the answer was lost")
	}
	return resp, err
}

func (f *network) set(fn func(*network)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

type contender struct {
	lease *dynamo.Lease
	clock *clock.Fake
	net   *network
}

// newContender is one controller process: its own client, its own clock.
// Requests are tried once, so injected faults surface at once.
func newContender(t *testing.T, cfg aws.Config, table, name string) *contender {
	t.Helper()
	net := &network{base: awshttp.NewBuildableClient()}
	db := dynamo.NewClient(cfg, func(o *dynamodb.Options) {
		o.HTTPClient = net
		o.Retryer = aws.NopRetryer{}
	})
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	l, err := dynamo.NewLease(db, dynamo.LeaseConfig{Table: table, Name: name, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return &contender{lease: l, clock: clk, net: net}
}

func leaseTable(t *testing.T) (aws.Config, string, string) {
	t.Helper()
	cfg, env := stack(t)
	return cfg, env[resources.EnvLeaseTable], env[resources.EnvJobsTable]
}

func acquire(t *testing.T, c *contender) leader.Grant {
	t.Helper()
	// The grant renews for as long as this context lives: the test's.
	g, err := c.lease.Acquire(t.Context())
	if err != nil {
		t.Fatalf("Acquire by %s: %v", c.lease.Owner(), err)
	}
	t.Cleanup(func() { _ = g.Release(context.Background()) })
	return g
}

type acquired struct {
	g   leader.Grant
	err error
}

func acquireAsync(t *testing.T, c *contender) <-chan acquired {
	ctx, cancel := context.WithCancel(t.Context())
	out := make(chan acquired, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g, err := c.lease.Acquire(ctx)
		out <- acquired{g, err}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		select {
		case r := <-out: // the test never took it
			if r.g != nil {
				_ = r.g.Release(context.Background())
			}
		default:
		}
	})
	return out
}

// armed waits until the clock has at least n active timers: the goroutine
// under test has finished its step and is waiting for time to pass.
func armed(t *testing.T, clk *clock.Fake, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for clk.Waiters() < n {
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine armed a timer on the fake clock within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// step moves a waiting contender's clock on, once it is waiting.
func step(t *testing.T, c *contender, d time.Duration) {
	t.Helper()
	armed(t, c.clock, 1)
	c.clock.Advance(d)
}

func notYet(t *testing.T, ch <-chan acquired, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s: Acquire returned early (grant %v, err %v)", what, r.g != nil, r.err)
	default:
	}
}

func got(t *testing.T, ch <-chan acquired) leader.Grant {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Acquire: %v", r.err)
		}
		t.Cleanup(func() { _ = r.g.Release(context.Background()) })
		return r.g
	case <-time.After(5 * time.Second):
		t.Fatal("Acquire did not return within 5 s")
		return nil
	}
}

func closed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not closed within 5 s", what)
	}
}

func open(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: closed, want open", what)
	default:
	}
}

func TestLeaseFenceGrowsAcrossAcquireReleaseAndSteal(t *testing.T) {
	cfg, table, _ := leaseTable(t)
	a := newContender(t, cfg, table, "controller")
	b := newContender(t, cfg, table, "controller")

	g1 := acquire(t, a)
	if g1.Fence() != 1 {
		t.Fatalf("first fence = %d, want 1", g1.Fence())
	}
	if err := g1.Release(t.Context()); err != nil {
		t.Fatalf("Release: %v", err)
	}
	closed(t, g1.Lost(), "Lost of a released grant")
	closed(t, dynamo.GrantDone(g1), "renew loop of a released grant")

	// A released lease is taken at once, with the next fence.
	g2 := acquire(t, b)
	if g2.Fence() != 2 {
		t.Fatalf("fence after release = %d, want 2", g2.Fence())
	}

	// b stops renewing (its clock stands still); a steals after watching
	// the record unchanged for the lease duration.
	ch := acquireAsync(t, a)
	for range 5 {
		step(t, a, dynamo.DefaultRenewInterval)
	}
	g3 := got(t, ch)
	if g3.Fence() != 3 {
		t.Fatalf("fence after steal = %d, want 3", g3.Fence())
	}
	rec, err := a.lease.Record(t.Context())
	if err != nil || rec.Fence != 3 || rec.Owner != a.lease.Owner() {
		t.Fatalf("record = %+v, %v; want fence 3 owned by %s", rec, err, a.lease.Owner())
	}
	if err := g3.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if g4 := acquire(t, b); g4.Fence() != 4 {
		t.Fatalf("fence after steal and release = %d, want 4", g4.Fence())
	}
}

func TestLeaseIsStolenAfterExpiryAndNeverBefore(t *testing.T) {
	cfg, table, jobs := leaseTable(t)
	holder := newContender(t, cfg, table, "controller")
	thief := newContender(t, cfg, table, "controller")
	old := acquire(t, holder)

	ch := acquireAsync(t, thief)
	// The holder is paused (its clock stands still, so it never renews).
	// The thief watches the same record version for 9.999 s: not yet.
	for range 4 {
		step(t, thief, 2*time.Second)
	}
	step(t, thief, 1999*time.Millisecond)
	armed(t, thief.clock, 1)
	notYet(t, ch, "after 9.999 s of an unchanged record")
	rec, err := thief.lease.Record(t.Context())
	if err != nil || rec.Owner != holder.lease.Owner() {
		t.Fatalf("record = %+v, %v; the holder must still own it", rec, err)
	}
	// At 10 s it takes over.
	thief.clock.Advance(time.Millisecond)
	cur := got(t, ch)
	if cur.Fence() <= old.Fence() {
		t.Fatalf("new fence %d is not above the old %d", cur.Fence(), old.Fence())
	}

	// The new leader writes; the old one, still believing it leads, is
	// fenced out of its next write.
	s := newStore(t, cfg, jobs)
	id := storetest.JobID(t, "lease")
	st, err := s.PutStatus(t.Context(), old.Fence(), storetest.Status(id))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutStatus(t.Context(), cur.Fence(), st); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutStatus(t.Context(), old.Fence(), st); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("write by the deposed holder = %v, want ErrFenced", err)
	}
	// And its next renewal tells it so.
	open(t, old.Lost(), "old holder's Lost before its next renewal")
	holder.clock.Advance(dynamo.DefaultRenewInterval)
	closed(t, old.Lost(), "old holder's Lost after a refused renewal")
	closed(t, dynamo.GrantDone(old), "old holder's renew loop")
}

func TestLeaseRenewalsKeepContendersWatching(t *testing.T) {
	cfg, table, _ := leaseTable(t)
	holder := newContender(t, cfg, table, "controller")
	thief := newContender(t, cfg, table, "controller")
	g := acquire(t, holder)
	ch := acquireAsync(t, thief)

	// For 60 s both clocks move together and the holder renews every 2 s:
	// the thief sees a new version each time and never takes over.
	for i := range int64(30) {
		renewAt(t, holder, g, i+1)
		step(t, thief, 2*time.Second)
	}
	armed(t, thief.clock, 1)
	notYet(t, ch, "while the holder renews")
	open(t, g.Lost(), "holder's Lost while renewing")
	// Once the holder stops, the thief takes over a lease duration later.
	for range 5 {
		step(t, thief, 2*time.Second)
	}
	if cur := got(t, ch); cur.Fence() != g.Fence()+1 {
		t.Fatalf("fence after take-over = %d, want %d", cur.Fence(), g.Fence()+1)
	}
}

// A holder cut off from DynamoDB gives up at its renew deadline, before a
// contender watching the same record can take over.
func TestPartitionedHolderLosesBeforeAnyoneCanSteal(t *testing.T) {
	cfg, table, _ := leaseTable(t)
	holder := newContender(t, cfg, table, "controller")
	thief := newContender(t, cfg, table, "controller")
	g := acquire(t, holder)
	ch := acquireAsync(t, thief)
	armed(t, thief.clock, 1)
	holder.net.set(func(f *network) { f.partitioned = true })

	// The thief's reads go to the emulator in real time while the test
	// moves the fake clocks, so on a loaded machine its take-over can land
	// a few steps after the lease duration: the walk goes on to 20 s.
	lostAt, tookAt := time.Duration(-1), time.Duration(-1)
	for elapsed := time.Duration(0); elapsed < 20*time.Second; {
		elapsed += 500 * time.Millisecond
		holder.clock.Advance(500 * time.Millisecond)
		step(t, thief, 500*time.Millisecond)
		if lostAt < 0 && elapsed >= dynamo.DefaultRenewDeadline {
			closed(t, g.Lost(), "Lost at the renew deadline")
			lostAt = elapsed
		}
		if lostAt < 0 {
			open(t, g.Lost(), "Lost before the renew deadline")
		}
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatal(r.err)
			}
			t.Cleanup(func() { _ = r.g.Release(context.Background()) })
			tookAt = elapsed
			elapsed = time.Hour
		default:
			armed(t, thief.clock, 1)
		}
	}
	if lostAt != dynamo.DefaultRenewDeadline {
		t.Fatalf("holder lost the lease at %s, want at its renew deadline %s", lostAt, dynamo.DefaultRenewDeadline)
	}
	switch {
	case tookAt < 0:
		t.Fatalf("thief did not take over within 20 s of the holder's partition (lease duration %s)", dynamo.DefaultLeaseDuration)
	case tookAt < dynamo.DefaultLeaseDuration:
		t.Fatalf("thief took over at %s, before the lease duration %s", tookAt, dynamo.DefaultLeaseDuration)
	}
	closed(t, dynamo.GrantDone(g), "renew loop after the deadline")
}

// A renewal whose answer is lost may still have been applied: the holder
// re-reads the record and keeps the lease, and its deadline counts from
// that renewal.
func TestRenewalWithLostAnswerIsConfirmedByReading(t *testing.T) {
	cfg, table, _ := leaseTable(t)
	holder := newContender(t, cfg, table, "controller")
	g := acquire(t, holder)
	before, err := holder.lease.Record(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	// The renewal at 2 s lands, but its answer is lost; every later write
	// fails outright.
	holder.net.set(func(f *network) { f.dropAnswers = 1 })
	renewAt(t, holder, g, 1)
	after, err := holder.lease.Record(t.Context())
	if err != nil || after.Version == before.Version {
		t.Fatalf("record = %+v, %v; the renewal at 2 s should have landed", after, err)
	}
	holder.net.set(func(f *network) { f.failWrites = true })
	renewAt(t, holder, g, 2) // 4 s: fails
	renewAt(t, holder, g, 3) // 6 s: fails
	// Had the holder not confirmed the 2 s renewal by reading, its deadline
	// would have passed at 6 s; it counts from 2 s instead.
	holder.clock.Advance(1999 * time.Millisecond)
	open(t, g.Lost(), "Lost at 7.999 s after a confirmed renewal at 2 s")
	holder.clock.Advance(time.Millisecond)
	closed(t, g.Lost(), "Lost at 8 s, the deadline after the 2 s renewal")
}

// renewAt moves the holder's clock to its next renewal and waits until
// the loop has acted on the n-th outcome.
func renewAt(t *testing.T, c *contender, g leader.Grant, n int64) {
	t.Helper()
	armed(t, c.clock, 2) // the renew ticker and the deadline timer
	c.clock.Advance(dynamo.DefaultRenewInterval)
	deadline := time.Now().Add(5 * time.Second)
	for dynamo.GrantRenewals(g) < n {
		select {
		case <-g.Lost():
			t.Fatalf("lease lost at renewal %d", n)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("renewal %d not handled within 5 s", n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLeaseEndsWithItsContextAndCanStillBeReleased(t *testing.T) {
	cfg, table, _ := leaseTable(t)
	a := newContender(t, cfg, table, "controller")
	b := newContender(t, cfg, table, "controller")
	ctx, cancel := context.WithCancel(t.Context())
	g, err := a.lease.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	closed(t, g.Lost(), "Lost after the context ended")
	closed(t, dynamo.GrantDone(g), "renew loop after the context ended")
	if err := g.Release(t.Context()); err != nil {
		t.Fatalf("Release after the context ended: %v", err)
	}
	if err := g.Release(t.Context()); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if g2 := acquire(t, b); g2.Fence() != g.Fence()+1 {
		t.Fatalf("fence after release = %d, want %d", g2.Fence(), g.Fence()+1)
	}
}

func TestAcquireGivesUpWhenItsContextEnds(t *testing.T) {
	cfg, table, _ := leaseTable(t)
	a := newContender(t, cfg, table, "controller")
	b := newContender(t, cfg, table, "controller")
	acquire(t, a)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := b.lease.Acquire(ctx)
		errc <- err
	}()
	armed(t, b.clock, 1)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Acquire after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Acquire did not return after its context ended")
	}
}

func TestLeasesWithOtherNamesAreIndependent(t *testing.T) {
	cfg, table, _ := leaseTable(t)
	a := newContender(t, cfg, table, "controller-a")
	b := newContender(t, cfg, table, "controller-b")
	if ga, gb := acquire(t, a), acquire(t, b); ga.Fence() != 1 || gb.Fence() != 1 {
		t.Fatalf("fences = %d, %d; want 1, 1", ga.Fence(), gb.Fence())
	}
}

// newLossyContender is a contender whose every lease write reaches the
// table and loses its first answer, and whose client retries as the SDK
// does by default.
func newLossyContender(t *testing.T, cfg aws.Config, table, name string, optFns ...func(*dynamodb.Options)) (*contender, *faults.Injector) {
	t.Helper()
	inj, err := faults.New(faults.Options{Seed: 2, Rules: []faults.Rule{
		{Kind: faults.LostAnswer, Operations: []string{"UpdateItem"}, Rate: 1, FirstAttemptOnly: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	db := dynamo.NewClient(cfg, append([]func(*dynamodb.Options){func(o *dynamodb.Options) {
		o.HTTPClient = inj
		o.Retryer = dynamo.NewRetryer(func(o *retry.StandardOptions) { o.RateLimiter = ratelimit.None })
	}}, optFns...)...)
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	l, err := dynamo.NewLease(db, dynamo.LeaseConfig{Table: table, Name: name, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return &contender{lease: l, clock: clk}, inj
}

// Acquire, renew and release each lose one answer and are retried by the
// SDK: the retry meets the holder's own record version and is the write's
// success. No lease is lost, no fence is spent twice, and the release
// frees the lease at once.
func TestLeaseWritesKnowTheirAnswer(t *testing.T) {
	leaseWritesKnowTheirAnswer(t)
}

// The same from an endpoint that returns no item with a refusal: the
// holder reads the record instead.
func TestLeaseWritesKnowTheirAnswerWithoutTheReturnedItem(t *testing.T) {
	var dropped atomic.Int64
	leaseWritesKnowTheirAnswer(t, func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, dropReturnedItems(&dropped))
	})
	if dropped.Load() == 0 {
		t.Fatal("no refusal came back with an item to drop")
	}
}

func leaseWritesKnowTheirAnswer(t *testing.T, optFns ...func(*dynamodb.Options)) {
	cfg, table, _ := leaseTable(t)
	holder, inj := newLossyContender(t, cfg, table, "controller", optFns...)

	g := acquire(t, holder)
	if inj.Injected(faults.LostAnswer, "UpdateItem") != 1 {
		t.Fatalf("acquire lost %d answers, want 1", inj.Injected(faults.LostAnswer, "UpdateItem"))
	}
	rec, err := holder.lease.Record(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if g.Fence() != 1 || rec.Fence != 1 || rec.Owner != holder.lease.Owner() {
		t.Fatalf("after an acquire with a lost answer: grant fence %d, record %+v; want fence 1 held by %s", g.Fence(), rec, holder.lease.Owner())
	}

	for n := int64(1); n <= 3; n++ {
		renewAt(t, holder, g, n)
		after, err := holder.lease.Record(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if after.Version == rec.Version || after.Fence != 1 {
			t.Fatalf("renewal %d: record %+v, want a new version under fence 1", n, after)
		}
		rec = after
	}
	open(t, g.Lost(), "Lost after renewals that each lost an answer")
	if got := inj.Injected(faults.LostAnswer, "UpdateItem"); got != 4 {
		t.Fatalf("%d answers lost, want 4 (acquire and three renewals)", got)
	}

	if err := g.Release(t.Context()); err != nil {
		t.Fatalf("Release with a lost answer: %v", err)
	}
	rec, err = holder.lease.Record(t.Context())
	if err != nil || !rec.Released {
		t.Fatalf("record after Release = %+v, %v; want released", rec, err)
	}
	if got := inj.Injected(faults.LostAnswer, "UpdateItem"); got != 5 {
		t.Fatalf("%d answers lost, want 5", got)
	}
	next := newContender(t, cfg, table, "controller")
	if g2 := acquire(t, next); g2.Fence() != 2 {
		t.Fatalf("next fence = %d, want 2: a lost answer spent a fence", g2.Fence())
	}
}

package dynamo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/leader"
	"github.com/weirstream/weir/core/store"
)

// Attribute names of a lease record (Lease table, one item per lease name).
const (
	attrLeaseName = "name"
	attrOwner     = "owner"
	attrRVN       = "rvn"
	attrLeaseMS   = "lease_ms"
	attrReleased  = "released"
	attrRenewedAt = "renewed_at"
)

// Lease defaults. The margin between the renew deadline and the lease is
// what makes Lost() close before anyone can take over (see LeaseConfig).
const (
	DefaultLeaseDuration = 10 * time.Second
	DefaultRenewInterval = 2 * time.Second
	DefaultRenewDeadline = 6 * time.Second
)

// maxRecordVersions bounds the record versions a holder accepts as its own
// (see grant.rvns); IN takes at most 100 operands.
const maxRecordVersions = 32

// LeaseConfig describes one lease and how its holder keeps it.
//
// Why a holder that missed its renew deadline stops before a contender can
// take over: a contender may only take the lease after it has seen the
// same record version for a full Duration on its own monotonic clock, and
// it can first see a version only after the write that made it, which the
// holder sent at some time t. The holder counts its deadline from the same
// t (the moment it sent the renew, not when the answer came), so it closes
// Lost() at t+RenewDeadline while the earliest take-over is t+Duration. The
// 4 s between them (at the defaults) absorbs the holder noticing late (a GC
// pause, a slow goroutine wake-up, clock-rate differences of parts per
// million), and is why RenewDeadline must stay well below Duration. Writes
// that a paused holder still gets out after that are what fences stop.
type LeaseConfig struct {
	// Table is the Lease table (WEIR_LEASE_TABLE).
	Table string
	// Name identifies the lease: every controller of one deployment
	// contends for the same name.
	Name string
	// Owner names this process in the record, for people and for the
	// conditions; it must be unique among contenders. Default: the host
	// name and a random suffix.
	Owner string
	// Duration is how long a contender watches an unchanged record before
	// it takes over. It is stored in the record, and contenders use the
	// holder's value. Default 10 s.
	Duration time.Duration
	// RenewInterval is how often the holder writes a fresh record version.
	// Contenders re-read the record at this cadence too. Default 2 s.
	RenewInterval time.Duration
	// RenewDeadline: a holder that has not renewed successfully for this
	// long closes Lost(). Default 6 s.
	RenewDeadline time.Duration
	// Clock measures the watch and the deadlines; tests pass a clock.Fake.
	// Default: the real monotonic clock.
	Clock clock.Clock
	// Logger receives why a tenure ended. Default: slog.Default().
	Logger *slog.Logger
}

func (c LeaseConfig) withDefaults() LeaseConfig {
	if c.Owner == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "controller"
		}
		c.Owner = host + "-" + randomHex(4)
	}
	if c.Duration == 0 {
		c.Duration = DefaultLeaseDuration
	}
	if c.RenewInterval == 0 {
		c.RenewInterval = DefaultRenewInterval
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = DefaultRenewDeadline
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate says which setting is unusable and why.
func (c LeaseConfig) Validate() error {
	switch {
	case c.Table == "":
		return errors.New("lease: the lease table name is empty: set WEIR_LEASE_TABLE to the stack's lease table")
	case c.Name == "":
		return errors.New("lease: the lease name is empty: name the lease the controllers contend for")
	case c.RenewInterval <= 0:
		return fmt.Errorf("lease: renew interval %s must be positive", c.RenewInterval)
	case c.RenewDeadline < 2*c.RenewInterval:
		return fmt.Errorf("lease: renew deadline %s leaves room for fewer than two renewals every %s: raise the deadline or renew more often", c.RenewDeadline, c.RenewInterval)
	case c.RenewDeadline/c.RenewInterval > maxRecordVersions:
		return fmt.Errorf("lease: renew deadline %s allows more than %d renewals every %s: renew less often", c.RenewDeadline, maxRecordVersions, c.RenewInterval)
	case c.Duration <= c.RenewDeadline:
		return fmt.Errorf("lease: duration %s must be longer than the renew deadline %s, or a contender could take over before the holder knows it lost", c.Duration, c.RenewDeadline)
	case c.Duration%time.Millisecond != 0:
		return fmt.Errorf("lease: duration %s must be whole milliseconds (it is stored in milliseconds)", c.Duration)
	}
	return nil
}

// Lease is leader.Lease on the Lease table: the DynamoDB lock client's
// algorithm (a fresh record version on every write, take-over after
// watching a version unchanged for a lease duration) with a fence number
// that grows with every tenure.
type Lease struct {
	db  *dynamodb.Client
	cfg LeaseConfig
}

var _ leader.Lease = (*Lease)(nil)

// NewLease returns a lease on cfg.Table; unset durations take the defaults.
func NewLease(db *dynamodb.Client, cfg LeaseConfig) (*Lease, error) {
	if db == nil {
		return nil, errors.New("lease: the DynamoDB client is nil: build one with dynamo.NewClient")
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Lease{db: db, cfg: cfg}, nil
}

// Check verifies, with one DescribeTable, that the Lease table is keyed on
// `name` as the data model says.
func (l *Lease) Check(ctx context.Context) error {
	desc, err := describe(ctx, l.db, l.cfg.Table)
	if err != nil {
		return err
	}
	return tableProblems(l.cfg.Table, checkKeys("table", desc.KeySchema, leaseKeys, desc.AttributeDefinitions))
}

// Owner is the name this process writes into the record.
func (l *Lease) Owner() string { return l.cfg.Owner }

// leaseRecord is the lease item.
type leaseRecord struct {
	Name      string `json:"name"`
	Owner     string `json:"owner"`
	RVN       string `json:"rvn"`
	Fence     int64  `json:"fence"`
	LeaseMS   int64  `json:"lease_ms"`
	Released  bool   `json:"released,omitempty"`
	RenewedAt string `json:"renewed_at"`
}

func (r *leaseRecord) duration(fallback time.Duration) time.Duration {
	if r.LeaseMS <= 0 {
		return fallback
	}
	return time.Duration(r.LeaseMS) * time.Millisecond
}

func (l *Lease) key() map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrLeaseName: &types.AttributeValueMemberS{Value: l.cfg.Name}}
}

// Record returns the lease record as stored (strongly consistent), or nil
// when no controller has ever held the lease. For diagnostics and tests.
func (l *Lease) Record(ctx context.Context) (*LeaseRecord, error) {
	r, err := l.read(ctx)
	if err != nil || r == nil {
		return nil, err
	}
	return &LeaseRecord{Owner: r.Owner, Version: r.RVN, Fence: store.Fence(r.Fence), Duration: r.duration(0), Released: r.Released}, nil
}

// LeaseRecord is what the Lease table says of a lease.
type LeaseRecord struct {
	Owner    string
	Version  string
	Fence    store.Fence
	Duration time.Duration
	Released bool
}

func (l *Lease) read(ctx context.Context) (*leaseRecord, error) {
	out, err := l.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      &l.cfg.Table,
		Key:            l.key(),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, fmt.Errorf("read lease %s from %s: %w", l.cfg.Name, l.cfg.Table, err)
	}
	return decodeRecord(out.Item)
}

// recordAfterFailure is the record a refused write met: the item DynamoDB
// returned with the refusal (ALL_OLD), or, from an endpoint that returns
// none, the record read strongly consistently.
func (l *Lease) recordAfterFailure(ctx context.Context, old map[string]types.AttributeValue) (*leaseRecord, error) {
	if old != nil {
		return decodeRecord(old)
	}
	return l.read(ctx)
}

func decodeRecord(item map[string]types.AttributeValue) (*leaseRecord, error) {
	if len(item) == 0 {
		return nil, nil
	}
	var r leaseRecord
	if err := unmarshal(item, &r); err != nil {
		return nil, fmt.Errorf("decode lease record: %w", err)
	}
	return &r, nil
}

// Acquire blocks until this process holds the lease, ctx ends, or DynamoDB
// fails past the client's retries. The grant's renewals run until Release
// or until ctx ends.
//
// A free (never held, or released) lease is taken at once. A held one is
// watched: only when its record version has not changed for the holder's
// full lease duration, measured on this process's monotonic clock, is it
// taken, conditional on that version. Wall clocks are never compared, so
// clock skew between hosts does not matter.
func (l *Lease) Acquire(ctx context.Context) (leader.Grant, error) {
	var (
		watching bool
		watched  string
		since    time.Time
		wait     time.Duration
	)
	clk := l.cfg.Clock
	for {
		rec, err := l.read(ctx)
		if err != nil {
			return nil, err
		}
		take := false
		switch {
		case rec == nil || rec.Released:
			take = true
		case !watching || rec.RVN != watched:
			watching, watched, since = true, rec.RVN, clk.Now()
			wait = rec.duration(l.cfg.Duration)
		case clk.Since(since) >= wait:
			take = true
		}
		if take {
			g, err := l.take(ctx, rec)
			if err != nil {
				return nil, err
			}
			if g != nil {
				return g, nil
			}
			// Another contender got there first: watch the new holder.
			watching = false
			continue
		}
		timer := clk.NewTimer(min(l.cfg.RenewInterval, wait-clk.Since(since)))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("acquire lease %s: %w", l.cfg.Name, ctx.Err())
		case <-timer.C():
		}
	}
}

// take starts a tenure over rec (nil: no record yet): a conditional update
// that installs this owner and a new record version and adds one to the
// fence, which is never reset, so every tenure's fence is above all
// earlier ones. It returns nil, nil when the record changed meanwhile.
func (l *Lease) take(ctx context.Context, rec *leaseRecord) (*grant, error) {
	rvn := randomHex(16)
	clk := l.cfg.Clock
	var cond expression.ConditionBuilder
	switch {
	case rec == nil:
		cond = expression.AttributeNotExists(expression.Name(attrLeaseName))
	case rec.RVN == "":
		cond = expression.AttributeNotExists(expression.Name(attrRVN))
	default:
		cond = expression.Name(attrRVN).Equal(expression.Value(rec.RVN))
	}
	fence := expression.Name(attrFence)
	update := expression.
		Set(expression.Name(attrOwner), expression.Value(l.cfg.Owner)).
		Set(expression.Name(attrRVN), expression.Value(rvn)).
		Set(expression.Name(attrLeaseMS), expression.Value(l.cfg.Duration.Milliseconds())).
		Set(expression.Name(attrRenewedAt), expression.Value(clk.Now().UTC().Format(time.RFC3339Nano))).
		Set(fence, expression.Plus(expression.IfNotExists(fence, expression.Value(0)), expression.Value(1))).
		Remove(expression.Name(attrReleased))
	expr, err := expression.NewBuilder().WithUpdate(update).WithCondition(cond).Build()
	if err != nil {
		return nil, fmt.Errorf("build lease update: %w", err)
	}
	sentAt := clk.Now()
	out, err := l.db.UpdateItem(ctx, updateInput(l.cfg.Table, l.key(), expr, types.ReturnValueAllNew))
	var now *leaseRecord
	if old, failed := conditionFailure(err); failed {
		// A retry of an attempt that did succeed fails its condition
		// against our own new version: that is a success.
		if now, err = l.recordAfterFailure(ctx, old); err != nil || now == nil || now.RVN != rvn {
			return nil, err
		}
	} else if err != nil {
		// The outcome is unknown (the answer was lost): the record says.
		var rerr error
		if now, rerr = l.read(ctx); rerr != nil || now == nil || now.RVN != rvn {
			return nil, fmt.Errorf("take lease %s: %w", l.cfg.Name, err)
		}
	} else if now, err = decodeRecord(out.Attributes); err != nil {
		return nil, err
	}
	if now == nil {
		return nil, fmt.Errorf("take lease %s: DynamoDB returned no record", l.cfg.Name)
	}
	return l.start(ctx, store.Fence(now.Fence), rvn, sentAt), nil
}

// grant is one tenure. Its renew loop is the only goroutine it starts;
// Release and the end of the Acquire context stop it.
type grant struct {
	l      *Lease
	fence  store.Fence
	lost   chan struct{}
	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}

	// handled counts the renewal outcomes the loop has acted on.
	handled atomic.Int64

	mu sync.Mutex
	// rvns are the record versions this tenure wrote that may be the
	// stored one: the last confirmed, then those of renewals whose outcome
	// is unknown. Renewals and Release accept any of them as ours.
	rvns     []string
	released bool
}

func (l *Lease) start(ctx context.Context, fence store.Fence, rvn string, sentAt time.Time) *grant {
	ctx, cancel := context.WithCancel(ctx)
	g := &grant{
		l: l, fence: fence, rvns: []string{rvn},
		lost: make(chan struct{}), cancel: cancel, done: make(chan struct{}),
	}
	go g.run(ctx, sentAt)
	return g
}

func (g *grant) Fence() store.Fence    { return g.fence }
func (g *grant) Lost() <-chan struct{} { return g.lost }

func (g *grant) markLost(reason string) {
	g.once.Do(func() {
		close(g.lost)
		if reason != "" {
			g.l.cfg.Logger.Warn("lease lost", "lease", g.l.cfg.Name, "owner", g.l.cfg.Owner, "fence", int64(g.fence), "reason", reason)
		}
	})
}

type renewOutcome int

const (
	renewed renewOutcome = iota
	renewUnknown
	renewLost
)

// run renews every RenewInterval and closes Lost when a renewal is
// refused, when none succeeded within RenewDeadline of the last success
// being sent, or when ctx ends.
func (g *grant) run(ctx context.Context, lastSent time.Time) {
	defer close(g.done)
	cfg := g.l.cfg
	clk := cfg.Clock
	deadline := clk.NewTimer(cfg.RenewDeadline - clk.Since(lastSent))
	defer deadline.Stop()
	tick := clk.NewTicker(cfg.RenewInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			g.markLost("")
			return
		case <-deadline.C():
			g.markLost(fmt.Sprintf("no renewal succeeded within %s", cfg.RenewDeadline))
			return
		case <-tick.C():
		}
		// The call runs beside the deadline: a renewal that hangs must not
		// keep the holder acting past it.
		callCtx, cancel := context.WithCancel(ctx)
		result := make(chan renewResult, 1)
		go func() { result <- g.renew(callCtx) }()
		var r renewResult
		select {
		case r = <-result:
			cancel()
		case <-deadline.C():
			cancel()
			<-result
			g.markLost(fmt.Sprintf("no renewal succeeded within %s", cfg.RenewDeadline))
			return
		case <-ctx.Done():
			cancel()
			<-result
			g.markLost("")
			return
		}
		g.handled.Add(1)
		switch r.outcome {
		case renewed:
			if !deadline.Stop() {
				// It fired as the answer arrived; the renewal that just
				// succeeded moves the deadline on, so drop the stale tick.
				select {
				case <-deadline.C():
				default:
				}
			}
			deadline.Reset(cfg.RenewDeadline - clk.Since(r.sentAt))
		case renewLost:
			g.markLost(r.reason)
			return
		case renewUnknown:
			if ctx.Err() != nil {
				continue // being released: the next pass ends the loop
			}
			cfg.Logger.Warn("lease renewal failed; retrying until the renew deadline", "lease", cfg.Name, "owner", cfg.Owner, "error", r.reason)
		}
	}
}

type renewResult struct {
	outcome renewOutcome
	sentAt  time.Time
	reason  string
}

// ours is the condition that the record still belongs to this tenure.
func (g *grant) ours() (expression.ConditionBuilder, []string) {
	g.mu.Lock()
	rvns := slices.Clone(g.rvns)
	g.mu.Unlock()
	ops := make([]expression.OperandBuilder, len(rvns))
	for i, v := range rvns {
		ops[i] = expression.Value(v)
	}
	var version expression.ConditionBuilder
	if len(ops) == 1 {
		version = expression.Name(attrRVN).Equal(ops[0])
	} else {
		version = expression.Name(attrRVN).In(ops[0], ops[1:]...)
	}
	return expression.Name(attrOwner).Equal(expression.Value(g.l.cfg.Owner)).And(version), rvns
}

func (g *grant) confirm(rvn string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rvns = []string{rvn}
}

func (g *grant) maybe(rvn string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !slices.Contains(g.rvns, rvn) {
		g.rvns = append(g.rvns, rvn)
	}
	if len(g.rvns) > maxRecordVersions {
		g.rvns = append(g.rvns[:1], g.rvns[len(g.rvns)-maxRecordVersions+1:]...)
	}
}

// write sets a new record version (and the extra update) if the record is
// still ours. A conditional failure whose stored version is the new one
// is a retried success.
func (g *grant) write(ctx context.Context, extra func(expression.UpdateBuilder) expression.UpdateBuilder) (rvn string, outcome renewOutcome, err error) {
	l := g.l
	rvn = randomHex(16)
	cond, known := g.ours()
	update := expression.
		Set(expression.Name(attrRVN), expression.Value(rvn)).
		Set(expression.Name(attrRenewedAt), expression.Value(l.cfg.Clock.Now().UTC().Format(time.RFC3339Nano)))
	if extra != nil {
		update = extra(update)
	}
	expr, err := expression.NewBuilder().WithUpdate(update).WithCondition(cond).Build()
	if err != nil {
		return rvn, renewUnknown, fmt.Errorf("build lease update: %w", err)
	}
	_, err = l.db.UpdateItem(ctx, updateInput(l.cfg.Table, l.key(), expr, types.ReturnValueNone))
	if old, failed := conditionFailure(err); failed {
		rec, rerr := l.recordAfterFailure(ctx, old)
		switch {
		case rerr != nil:
			return rvn, renewUnknown, fmt.Errorf("a lease write was refused and reading the record failed: %w", rerr)
		case rec != nil && rec.RVN == rvn:
			return rvn, renewed, nil
		}
		return rvn, renewLost, describeTakeover(rec, l.cfg.Owner)
	}
	if err == nil {
		return rvn, renewed, nil
	}
	// Unknown outcome: the write may have landed. Count the new version as
	// possibly ours, and ask the record.
	g.maybe(rvn)
	rec, rerr := l.read(ctx)
	switch {
	case rerr != nil:
		return rvn, renewUnknown, fmt.Errorf("%w; re-reading the record failed too: %v", err, rerr)
	case rec != nil && rec.RVN == rvn:
		return rvn, renewed, nil
	case rec != nil && rec.Owner == l.cfg.Owner && slices.Contains(known, rec.RVN):
		return rvn, renewUnknown, err
	default:
		return rvn, renewLost, describeTakeover(rec, l.cfg.Owner)
	}
}

func describeTakeover(rec *leaseRecord, owner string) error {
	switch {
	case rec == nil:
		return errors.New("the lease record is gone")
	case rec.Owner != owner:
		return fmt.Errorf("%s took the lease over with fence %d", rec.Owner, rec.Fence)
	case rec.Released:
		return errors.New("the lease was released")
	default:
		return fmt.Errorf("the record version changed under this holder (fence %d)", rec.Fence)
	}
}

func (g *grant) renew(ctx context.Context) renewResult {
	sentAt := g.l.cfg.Clock.Now()
	rvn, outcome, err := g.write(ctx, nil)
	if outcome == renewed {
		g.confirm(rvn)
		return renewResult{outcome: renewed, sentAt: sentAt}
	}
	return renewResult{outcome: outcome, sentAt: sentAt, reason: err.Error()}
}

// Release stops the renewals (Lost is closed) and marks the record
// released, with a new version, so a contender takes over at once instead
// of waiting out the lease. Releasing a lease that is no longer ours, or
// releasing twice, does nothing.
func (g *grant) Release(ctx context.Context) error {
	g.cancel()
	<-g.done
	g.mu.Lock()
	if g.released {
		g.mu.Unlock()
		return nil
	}
	g.mu.Unlock()
	rvn, outcome, err := g.write(ctx, func(u expression.UpdateBuilder) expression.UpdateBuilder {
		return u.Set(expression.Name(attrReleased), expression.Value(true))
	})
	switch outcome {
	case renewed:
		g.mu.Lock()
		g.released = true
		g.rvns = []string{rvn}
		g.mu.Unlock()
		return nil
	case renewLost:
		return nil
	default:
		return fmt.Errorf("release lease %s: %w (it expires on its own %s after the last renewal)", g.l.cfg.Name, err, g.l.cfg.Duration)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/controller"
	"github.com/weirstream/weir/core/fleet/memfleet"
	"github.com/weirstream/weir/core/manager"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/faults"
	"github.com/weirstream/weir/infra/sqs"
)

// errKilled is what every request of a killed controller gets: the process
// is gone, nothing it had not sent yet reaches AWS.
var errKilled = errors.New("chaos: controller killed")

// gate stands between one controller and AWS. Open, requests go through
// the fault injector (or straight through once the campaign is calm).
// Paused, they are held, as a stopped process holds them, and sent when
// the pause ends, whatever their context says by then. Killed, they fail.
type gate struct {
	owner  string
	trace  *tracer
	inj    *faults.Injector
	direct faults.HTTPClient
	calm   *atomic.Bool

	mu     sync.Mutex
	paused chan struct{} // closed when the pause ends; nil while not paused
	dead   bool
	held   atomic.Int64
}

func (g *gate) Do(r *http.Request) (*http.Response, error) {
	g.mu.Lock()
	dead, paused := g.dead, g.paused
	g.mu.Unlock()
	if dead {
		return nil, errKilled
	}
	if paused != nil {
		// A frozen process cannot cancel what it was about to send: the
		// request leaves when the process runs again, under a context
		// that may have ended meanwhile.
		g.held.Add(1)
		<-paused
		g.mu.Lock()
		dead = g.dead
		g.mu.Unlock()
		if dead {
			// Killed while frozen: what it held never leaves.
			return nil, errKilled
		}
		r = r.WithContext(context.WithoutCancel(r.Context()))
	}
	if g.trace != nil {
		done := g.trace.request(g.owner, r)
		resp, err := g.send(r)
		done(resp, err)
		return resp, err
	}
	return g.send(r)
}

func (g *gate) send(r *http.Request) (*http.Response, error) {
	if g.calm.Load() {
		return g.direct.Do(r)
	}
	// An injected DynamoDB answer carries its CRC32, as the SDK expects.
	return g.inj.Do(r)
}

func (g *gate) pause() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused == nil {
		g.paused = make(chan struct{})
	}
}

func (g *gate) resume() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused != nil {
		close(g.paused)
		g.paused = nil
	}
}

func (g *gate) kill() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.dead = true
	if g.paused != nil {
		close(g.paused)
		g.paused = nil
	}
}

// controllerProc is one controller the campaign starts, kills, pauses and
// stops: a goroutine "process" (instance) or a weir-controller process.
type controllerProc interface {
	name() string
	// kill is SIGKILL: nothing more reaches AWS, the lease is not
	// released and must expire.
	kill()
	// pause freezes the controller (SIGSTOP) until resume (SIGCONT).
	pause()
	resume()
	// stop is SIGTERM: the lease is released.
	stop()
	// faults are the AWS faults it met so far.
	faults() []faults.Count
}

// controllerFleet starts controllers.
type controllerFleet interface {
	start(ctx context.Context, owner string, seed uint64) (controllerProc, error)
	// calm makes every request from now on meet no fault; true means the
	// faults live in the controllers, which must be replaced.
	calm() bool
}

// instance is one controller process: a lease, a manager and their AWS
// clients, all through one gate.
type instance struct {
	owner  string
	gate   *gate
	cancel context.CancelFunc
	done   chan struct{}
}

// controllerEnv is what every instance shares.
type controllerEnv struct {
	aws        aws.Config
	jobsTable  string
	leaseTable string
	queueURL   string
	rules      []faults.Rule
	quiet      *atomic.Bool
	settings   controller.Settings
	lease      dynamo.LeaseConfig
	log        *slog.Logger
	direct     faults.HTTPClient
	trace      *tracer
}

// tracer writes one line per DynamoDB write a controller sends (when it
// left, which controller, the operation and attempt, the request), so a
// violation can be traced to the request that caused it.
type tracer struct {
	mu sync.Mutex
	w  io.Writer
}

// request reads r's body for the trace and returns what writes the line
// once the answer (its status, or the error that stands for it) is known.
func (t *tracer) request(owner string, r *http.Request) func(*http.Response, error) {
	op := r.Header.Get("X-Amz-Target")
	if !strings.HasPrefix(op, "DynamoDB_") || !(strings.HasSuffix(op, "Item") && !strings.HasSuffix(op, "GetItem") || strings.HasSuffix(op, "Items")) {
		return func(*http.Response, error) {}
	}
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		_ = r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	sent := time.Now()
	return func(resp *http.Response, err error) {
		outcome := "no answer"
		switch {
		case err != nil:
			outcome = "error: " + err.Error()
		case resp != nil:
			outcome = strconv.Itoa(resp.StatusCode)
			if resp.Header.Get("X-Amzn-Requestid") == "injected-fault" {
				outcome += " injected"
			}
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		fmt.Fprintf(t.w, "%s %s %s %s [%s] (%s) %s\n", sent.UTC().Format("15:04:05.000"), time.Now().UTC().Format("15:04:05.000"),
			owner, op[strings.IndexByte(op, '.')+1:], r.Header.Get("Amz-Sdk-Request"), outcome, body)
	}
}

// traced sends requests through base, tracing DynamoDB writes.
type traced struct {
	owner string
	trace *tracer
	base  faults.HTTPClient
}

func (t *traced) Do(r *http.Request) (*http.Response, error) {
	done := t.trace.request(t.owner, r)
	resp, err := t.base.Do(r)
	done(resp, err)
	return resp, err
}

// noQuota retries every injected fault: the SDK's retry quota would
// otherwise turn a burst of them into errors for a while, which tests the
// quota, not weir.
func noQuota(o *retry.StandardOptions) { o.RateLimiter = ratelimit.None }

func (e *controllerEnv) calm() bool {
	e.quiet.Store(true)
	return false
}

// start launches a controller instance; it runs until stop or kill.
func (e *controllerEnv) start(parent context.Context, owner string, seed uint64) (controllerProc, error) {
	inj, err := faults.New(faults.Options{Seed: seed, Rules: e.rules})
	if err != nil {
		return nil, err
	}
	g := &gate{owner: owner, trace: e.trace, inj: inj, direct: e.direct, calm: e.quiet}
	cfg := e.aws.Copy()
	cfg.HTTPClient = g
	db := dynamo.NewClient(cfg, func(o *dynamodb.Options) { o.Retryer = dynamo.NewRetryer(noQuota) })
	st, err := dynamo.NewStore(db, e.jobsTable)
	if err != nil {
		return nil, err
	}
	log := e.log.With("controller", owner)
	q := awssqs.NewFromConfig(cfg, func(o *awssqs.Options) { o.Retryer = retry.NewStandard(noQuota) })
	in, err := sqs.NewInbox(q, e.queueURL, sqs.InboxOptions{WaitTime: time.Second, Receivers: 2, Logger: log})
	if err != nil {
		return nil, err
	}
	lc := e.lease
	lc.Owner = owner
	lc.Logger = log
	lease, err := dynamo.NewLease(db, lc)
	if err != nil {
		return nil, err
	}
	m, err := manager.New(manager.Deps{
		Store: st, Inbox: in, Fleet: memfleet.New(), Log: log, Settings: e.settings,
		PollInterval: 200 * time.Millisecond, Receivers: 2,
	})
	if err != nil {
		return nil, fmt.Errorf("chaos: controller %s: %w", owner, err)
	}
	ctx, cancel := context.WithCancel(parent)
	in2 := &instance{owner: owner, gate: g, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(in2.done)
		if err := manager.RunAsLeader(ctx, lease, clock.Real{}, log, m.Run); err != nil {
			log.Error("controller ended", "err", err)
		}
	}()
	return in2, nil
}

func (i *instance) name() string           { return i.owner }
func (i *instance) pause()                 { i.gate.pause() }
func (i *instance) resume()                { i.gate.resume() }
func (i *instance) faults() []faults.Count { return i.gate.inj.Counts() }

// stop is a graceful stop (SIGTERM): the lease is released.
func (i *instance) stop() {
	i.cancel()
	<-i.done
}

// kill is SIGKILL: nothing more reaches AWS, the lease is not released
// and must expire.
func (i *instance) kill() {
	i.gate.kill()
	i.cancel()
	<-i.done
}

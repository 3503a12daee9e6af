// Package chaos runs fault campaigns against weir's controller on a real
// AWS endpoint (the emulator locally): several controllers contend for the
// lease, each through its own fault injector; simulated workers report
// through SQS; an operator rescales, restarts and stops jobs; and at random
// times controllers are killed, paused past their lease or stopped, and
// workers crash, fall silent or fail tasks. An independent checker
// (chaos/checker) reads the tables and queues throughout and at the end.
//
// A campaign is reproducible in what it decides (faults, events, their
// order) from its seed; the timing of a real endpoint is not, so a seed
// names a campaign, not an exact interleaving.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/weirstream/weir/chaos/checker"
	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/controller"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/faults"
	"github.com/weirstream/weir/infra/sqs"
)

const (
	sourceOperator = "source"
	sinkOperator   = "sink"
)

// Env names the resources a campaign runs on; they should be its own
// (resources.Template.Create with a fresh stack name).
type Env struct {
	AWS        aws.Config
	JobsTable  string
	LeaseTable string
	QueueURL   string
	DLQURL     string
}

// Options shape one campaign. Zero fields take the defaults.
type Options struct {
	Seed uint64
	// Duration is the faulty phase; a calm phase follows, in which the
	// jobs must reach the state their configs ask for within Settle.
	Duration time.Duration
	Settle   time.Duration
	// Jobs and Controllers: how many of each (defaults 4 and 3).
	Jobs        int
	Controllers int
	// FaultRate scales the injected AWS faults (default 1: about one
	// request in ten meets one).
	FaultRate float64
	// EventEvery is the mean time between process and operator events
	// (default 1.5 s).
	EventEvery time.Duration
	// MinFaults, if set, extends the faulty phase (up to twice Duration)
	// until at least that many faults were injected: on a slow endpoint
	// fewer requests are made, and so fewer faults.
	MinFaults int
	// Log receives the controllers' logs (default: discarded).
	Log *slog.Logger
	// Progress, if set, receives a line per event.
	Progress func(string)
	// Trace, if set, receives a line per DynamoDB write of a controller.
	Trace io.Writer
	// Processes, if set, runs the controllers as weir-controller
	// processes instead of goroutines.
	Processes *ProcessOptions
}

func (o Options) withDefaults() Options {
	if o.Duration == 0 {
		o.Duration = time.Minute
	}
	if o.Settle == 0 {
		o.Settle = 45 * time.Second
	}
	if o.Jobs == 0 {
		o.Jobs = 4
	}
	if o.Controllers == 0 {
		o.Controllers = 3
	}
	if o.FaultRate == 0 {
		o.FaultRate = 1
	}
	if o.EventEvery == 0 {
		o.EventEvery = 1500 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	return o
}

// Validate says which option is unusable.
func (o Options) Validate() error {
	switch {
	case o.Duration < 0 || o.Settle < 0 || o.EventEvery < 0:
		return errors.New("chaos: durations must not be negative")
	case o.Jobs < 0 || o.Jobs > 100:
		return fmt.Errorf("chaos: %d jobs: use 1 to 100", o.Jobs)
	case o.Controllers < 0 || o.Controllers > 10:
		return fmt.Errorf("chaos: %d controllers: use 1 to 10", o.Controllers)
	case o.MinFaults < 0:
		return fmt.Errorf("chaos: MinFaults is %d: give the least faults to inject, or 0", o.MinFaults)
	case o.FaultRate < 0 || o.FaultRate > 5:
		return fmt.Errorf("chaos: fault rate %v: use 0 (none) to 5", o.FaultRate)
	}
	return nil
}

// Report is what a campaign did and found.
type Report struct {
	Seed              uint64         `json:"seed"`
	Duration          string         `json:"duration"`
	FaultsInjected    int            `json:"faults_injected"`
	FaultsByKind      map[string]int `json:"faults_by_kind"`
	FaultsByOperation map[string]int `json:"faults_by_operation"`
	Jobs              int            `json:"jobs"`
	Controllers       int            `json:"controllers"`
	Operations        map[string]int `json:"operations"`
	Transitions       int            `json:"transitions"`
	Recoveries        int            `json:"recoveries"`
	Checker           checker.Stats  `json:"checker"`
	// Processes: the controllers were weir-controller processes.
	// OverlapsWhileFrozen counts job tenures that reported an effect after
	// a successor's began, explained by a SIGSTOP (see processFleet.check).
	Processes           bool                `json:"processes"`
	OverlapsWhileFrozen int                 `json:"overlaps_while_frozen,omitempty"`
	Messages            checker.Messages    `json:"messages"`
	Violations          int                 `json:"violations"`
	ViolationDetails    []checker.Violation `json:"violation_details"`
}

// campaign is one run's moving parts.
type campaign struct {
	o       Options
	env     Env
	rng     *rand.Rand
	ctl     *controllerEnv
	check   *checker.Checker
	workers *workers
	admin   *dynamo.Store // the operator's and workers' view, without faults
	watch   *dynamo.Lease // reads who leads

	mu        sync.Mutex
	fleet     controllerFleet
	instances []controllerProc
	started   []controllerProc // every controller ever started, for its fault counts
	spawned   int
	process   counter
	ops       counter
	expect    map[job.ID]checker.Expect
}

// Run runs one campaign and returns its report. It fails only when the
// campaign cannot run (bad options, unreachable endpoint); what it finds
// is in the report.
func Run(ctx context.Context, env Env, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	calm := &atomic.Bool{}
	settings := controller.DefaultSettings()
	settings.ProgressInterval = 50 * time.Millisecond
	settings.HeartbeatTimeout = 4 * time.Second
	settings.StopWait = 5 * time.Second
	settings.WorkerStartupTimeout = 15 * time.Second
	settings.TaskStartupTimeout = 15 * time.Second
	settings.CheckpointTimeout = 15 * time.Second
	settings.FinalCheckpointTimeout = 15 * time.Second
	settings.FinishingTimeout = 15 * time.Second
	settings.BackoffInitial = 100 * time.Millisecond
	settings.BackoffMax = 2 * time.Second
	settings.MetricsInterval = time.Second
	c := &campaign{
		o: o, env: env,
		rng: rand.New(rand.NewPCG(o.Seed, 0xc4a05)),
		ctl: &controllerEnv{
			aws: env.AWS, jobsTable: env.JobsTable, leaseTable: env.LeaseTable, queueURL: env.QueueURL,
			rules: rules(o.FaultRate), quiet: calm, settings: settings, log: o.Log, direct: awshttp.NewBuildableClient(),
			lease: dynamo.LeaseConfig{Table: env.LeaseTable, Name: "controller",
				Duration: 10 * time.Second, RenewInterval: 2 * time.Second, RenewDeadline: 6 * time.Second},
		},
		expect: map[job.ID]checker.Expect{},
	}
	if o.Trace != nil {
		c.ctl.trace = &tracer{w: o.Trace}
	}
	adminCfg := env.AWS.Copy()
	if c.ctl.trace != nil {
		// The operator's config writes are traced too: they are
		// transactions on the same table.
		adminCfg.HTTPClient = &traced{owner: "operator", trace: c.ctl.trace, base: c.ctl.direct}
	}
	db := dynamo.NewClient(adminCfg)
	q := awssqs.NewFromConfig(env.AWS)
	admin, err := dynamo.NewStore(db, env.JobsTable)
	if err != nil {
		return nil, err
	}
	pub, err := sqs.NewPublisher(q, env.QueueURL, sqs.PublisherOptions{})
	if err != nil {
		return nil, err
	}
	c.admin = admin
	watchCfg := c.ctl.lease
	watchCfg.Owner = "chaos-observer"
	if c.watch, err = dynamo.NewLease(db, watchCfg); err != nil {
		return nil, err
	}
	c.workers = newWorkers(admin, pub, o.Seed, workerTiming{Poll: 400 * time.Millisecond, Heartbeat: 500 * time.Millisecond, FinishedFor: 2 * time.Second})
	c.check = checker.New(checker.Config{
		DynamoDB: dynamodb.NewFromConfig(env.AWS), SQS: q,
		JobsTable: env.JobsTable, LeaseTable: env.LeaseTable, QueueURL: env.QueueURL, DLQURL: env.DLQURL,
		Seed: o.Seed, ConfigBound: o.Settle, BoundFromCalm: true,
	})
	c.fleet = c.ctl
	if o.Processes != nil {
		if c.fleet, err = newProcessFleet(env, *o.Processes, rules(o.FaultRate), c.ctl.lease); err != nil {
			return nil, err
		}
	}
	return c.run(ctx)
}

// rules are the AWS faults every controller meets, scaled by rate.
func rules(rate float64) []faults.Rule {
	writes := []string{"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems",
		"DeleteMessageBatch", "ChangeMessageVisibilityBatch", "SendMessageBatch"}
	r := func(x float64) float64 { return min(x*rate, 1) }
	return []faults.Rule{
		{Kind: faults.Latency, Rate: r(0.05), Delay: 40 * time.Millisecond},
		{Kind: faults.Latency, Rate: r(0.01), Delay: 400 * time.Millisecond},
		{Kind: faults.LostAnswer, Rate: r(0.04), Operations: writes},
		{Kind: faults.ServerError, Rate: r(0.03)},
		{Kind: faults.Throttle, Rate: r(0.03)},
	}
}

func (c *campaign) run(ctx context.Context) (*Report, error) {
	began := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	wg.Go(func() { c.check.Run(ctx, 500*time.Millisecond) })
	for i := range c.o.Jobs {
		id := job.ID(fmt.Sprintf("job-%02d", i))
		if err := c.createJob(ctx, id); err != nil {
			return nil, err
		}
		wg.Go(func() { c.workers.run(ctx, id) })
	}
	for range c.o.Controllers {
		if err := c.spawn(ctx); err != nil {
			return nil, err
		}
	}
	defer c.stopAll()

	// The faulty phase: events at random times until Duration (and until
	// MinFaults, within twice Duration).
	end, last := time.Now().Add(c.o.Duration), time.Now().Add(2*c.o.Duration)
	for ctx.Err() == nil && time.Now().Before(last) {
		if !time.Now().Before(end) {
			if c.injected() >= c.o.MinFaults {
				break
			}
			if end = time.Now().Add(c.o.EventEvery); end.After(last) {
				end = last
			}
		}
		wait := time.Duration(c.rng.ExpFloat64() * float64(c.o.EventEvery))
		if !clock.Sleep(ctx, clock.Real{}, min(wait, time.Until(end))) {
			break
		}
		if time.Now().Before(end) {
			c.event(ctx, &wg)
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// The calm phase: no more faults; every job must come to the state
	// its config asks for.
	c.mu.Lock()
	calming := slices.Clone(c.instances)
	c.mu.Unlock()
	for _, in := range calming {
		in.resume()
	}
	if c.fleet.calm() {
		// Faults live in the processes: each is replaced by one without.
		for _, in := range calming {
			if err := c.spawn(ctx); err != nil {
				return nil, err
			}
			c.remove(in)
			in.stop()
		}
	}
	c.check.Calm()
	c.o.Progress("calm: no more faults; waiting for every job to settle")
	c.check.Final(ctx, c.expectations(), c.o.Settle)

	// Workers stop, the controllers drain the queue, then stop.
	c.workers.stop()
	sent, poison := int(c.workers.sent.Load()), int(c.workers.poison.Load())
	msgs := c.check.Drain(ctx, sent, poison, isPoison, 40*time.Second, c.stopAll)
	cancel()
	wg.Wait()
	excused := 0
	if pf, ok := c.fleet.(*processFleet); ok {
		excused = pf.check(c.check, c.ctl.lease.Duration)
		if pf.o.Output != nil {
			pf.dump(pf.o.Output)
		}
	}
	rep := c.report(time.Since(began), msgs)
	rep.Processes, rep.OverlapsWhileFrozen = c.o.Processes != nil, excused
	return rep, nil
}

// createJob writes a job's first config, as the config API would.
func (c *campaign) createJob(ctx context.Context, id job.ID) error {
	cfg := job.Config{
		JobID: id,
		Spec: job.Spec{
			Operators: []job.Operator{
				{ID: sourceOperator, Parallelism: 2, Source: true},
				{ID: sinkOperator, Parallelism: 2, Committing: true},
			},
			SlotsPerWorker: 1, Program: "chaos",
		},
		CheckpointInterval: 2 * time.Second,
		RestartPolicy:      job.RestartPolicy{AllowedRestarts: -1, HealthyDuration: 10 * time.Second},
	}.WithDefaults()
	saved, err := c.admin.PutConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("chaos: create job %s: %w", id, err)
	}
	c.acknowledged(saved)
	return nil
}

func (c *campaign) acknowledged(cfg job.Config) {
	c.check.ConfigAcknowledged(string(cfg.JobID), cfg.Version)
	c.mu.Lock()
	defer c.mu.Unlock()
	want := checker.Expect{ConfigVersion: cfg.Version, State: string(job.Running), RestartNonce: cfg.RestartNonce}
	if cfg.Stop.Requested() {
		want.State = string(job.Stopped)
	}
	want.Parallelism = map[string]int{sourceOperator: 2, sinkOperator: 2}
	maps.Copy(want.Parallelism, cfg.Parallelism)
	c.expect[cfg.JobID] = want
}

func (c *campaign) expectations() map[string]checker.Expect {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]checker.Expect{}
	for id, e := range c.expect {
		out[string(id)] = e
	}
	return out
}

// spawn starts one more controller process.
func (c *campaign) spawn(ctx context.Context) error {
	c.mu.Lock()
	c.spawned++
	n := c.spawned
	c.mu.Unlock()
	owner := fmt.Sprintf("controller-%d", n)
	in, err := c.fleet.start(ctx, owner, c.o.Seed*1000+uint64(n))
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.instances = append(c.instances, in)
	c.started = append(c.started, in)
	c.mu.Unlock()
	return nil
}

func (c *campaign) stopAll() {
	c.mu.Lock()
	all := c.instances
	c.instances = nil
	c.mu.Unlock()
	for _, in := range all {
		in.resume()
		in.stop()
	}
}

// event draws and carries out one process or operator event.
func (c *campaign) event(ctx context.Context, wg *sync.WaitGroup) {
	id := job.ID(fmt.Sprintf("job-%02d", c.rng.IntN(c.o.Jobs)))
	switch x := c.rng.Float64(); {
	case x < 0.08:
		c.controllerEvent(ctx, wg, "kill")
	case x < 0.14:
		c.controllerEvent(ctx, wg, "pause")
	case x < 0.20:
		c.controllerEvent(ctx, wg, "graceful_stop")
	case x < 0.30:
		if c.workers.crash(id) {
			c.o.Progress("worker crash in " + string(id))
		}
	case x < 0.40:
		d := time.Duration(500+c.rng.IntN(5000)) * time.Millisecond
		if c.workers.silence(id, d) {
			c.o.Progress(fmt.Sprintf("worker of %s silent for %s", id, d))
		}
	case x < 0.48:
		if c.workers.failTask(id) {
			c.o.Progress("task failure in " + string(id))
		}
	case x < 0.52:
		c.workers.sendPoison(ctx, int(c.workers.poison.Load()))
	default:
		c.operate(ctx, id)
	}
}

// leader is the instance the lease names, if it is one of ours.
func (c *campaign) leader(ctx context.Context) controllerProc {
	rec, err := c.watch.Record(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil && rec != nil && !rec.Released {
		for _, in := range c.instances {
			if in.name() == rec.Owner {
				return in
			}
		}
	}
	if len(c.instances) == 0 {
		return nil
	}
	return c.instances[c.rng.IntN(len(c.instances))]
}

// controllerEvent kills, pauses or stops a controller, the leader most
// often (that is where it hurts), then starts a replacement.
func (c *campaign) controllerEvent(ctx context.Context, wg *sync.WaitGroup, kind string) {
	var in controllerProc
	if c.rng.Float64() < 0.75 {
		in = c.leader(ctx)
	} else {
		c.mu.Lock()
		if len(c.instances) > 0 {
			in = c.instances[c.rng.IntN(len(c.instances))]
		}
		c.mu.Unlock()
	}
	if in == nil {
		return
	}
	c.process.add(kind, 1)
	c.o.Progress(kind + " " + in.name())
	switch kind {
	case "pause":
		// Past the lease (10 s) and the renew deadline, so a standby
		// takes over while this one is frozen; afterwards it must write
		// nothing that takes effect and turn standby by itself.
		d := time.Duration(11000+c.rng.IntN(4000)) * time.Millisecond
		in.pause()
		wg.Go(func() {
			clock.Sleep(ctx, clock.Real{}, d)
			in.resume()
		})
		return
	case "kill":
		c.remove(in)
		in.kill()
	case "graceful_stop":
		c.remove(in)
		in.stop()
	}
	if err := c.spawn(ctx); err != nil && ctx.Err() == nil {
		c.o.Progress("could not start a replacement controller: " + err.Error())
	}
}

func (c *campaign) remove(in controllerProc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.instances = slices.DeleteFunc(c.instances, func(x controllerProc) bool { return x == in })
}

// operate changes a job's config as an operator would through the API:
// read, change, write with the version read, again on a conflict.
func (c *campaign) operate(ctx context.Context, id job.ID) {
	x := c.rng.Float64()
	for range 5 {
		cfg, err := c.admin.GetConfig(ctx, id)
		if err != nil {
			return
		}
		what := ""
		switch {
		case cfg.Stop.Requested():
			// A stopped job is started again (stop cleared), most often.
			if x < 0.7 {
				cfg.Stop, what = job.StopNone, "resume"
			} else {
				cfg.CheckpointInterval, what = time.Duration(1+c.rng.IntN(3))*time.Second, "interval"
			}
		case x < 0.25:
			cfg.Parallelism, what = map[string]int{sinkOperator: 1 + c.rng.IntN(3)}, "rescale"
		case x < 0.45:
			cfg.RestartNonce = fmt.Sprintf("n-%d", c.rng.IntN(1<<30))
			cfg.RestartMode = []job.RestartMode{job.RestartSafe, job.RestartForce}[c.rng.IntN(2)]
			what = "restart_" + string(cfg.RestartMode)
		case x < 0.65:
			cfg.Stop = []job.StopMode{job.StopCheckpoint, job.StopGraceful, job.StopImmediate, job.StopForce}[c.rng.IntN(4)]
			what = "stop_" + string(cfg.Stop)
		default:
			cfg.CheckpointInterval, what = time.Duration(1+c.rng.IntN(3))*time.Second, "interval"
		}
		saved, err := c.admin.PutConfig(ctx, cfg)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return
		}
		c.acknowledged(saved)
		c.ops.add(what, 1)
		c.o.Progress(fmt.Sprintf("%s %s (config version %d)", what, id, saved.Version))
		return
	}
}

// injected counts the faults injected so far, of every kind.
func (c *campaign) injected() int {
	n := 0
	c.mu.Lock()
	for _, in := range c.started {
		for _, k := range in.faults() {
			n += k.N
		}
	}
	c.mu.Unlock()
	for _, v := range c.process.snapshot() {
		n += v
	}
	for _, v := range c.workers.faults.snapshot() {
		n += v
	}
	return n
}

func (c *campaign) report(took time.Duration, msgs checker.Messages) *Report {
	r := &Report{
		Seed: c.o.Seed, Duration: took.Round(time.Second).String(),
		FaultsByKind: map[string]int{}, FaultsByOperation: map[string]int{},
		Jobs: c.o.Jobs, Controllers: c.o.Controllers, Operations: c.ops.snapshot(),
		Messages: msgs,
	}
	c.mu.Lock()
	for _, in := range c.started {
		for _, n := range in.faults() {
			r.FaultsByKind[string(n.Kind)] += n.N
			r.FaultsByOperation[n.Operation] += n.N
		}
	}
	c.mu.Unlock()
	maps.Copy(r.FaultsByKind, c.process.snapshot())
	for k, v := range c.workers.faults.snapshot() {
		r.FaultsByKind[k] += v
	}
	for _, n := range r.FaultsByKind {
		r.FaultsInjected += n
	}
	r.Checker = c.check.Stats()
	r.Transitions, r.Recoveries = r.Checker.Transitions, r.Checker.Recoveries
	r.ViolationDetails = c.check.Violations()
	if r.ViolationDetails == nil {
		r.ViolationDetails = []checker.Violation{}
	}
	r.Violations = len(r.ViolationDetails)
	return r
}

// Summary is a report in a few lines: the figures, the faults by kind and
// every violation.
func Summary(r *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %s: %d faults injected, %d transitions, %d recoveries, %d checkpoints, %d envelopes sent (%d dead-lettered, %d malformed), %d violations",
		r.Seed, r.Duration, r.FaultsInjected, r.Transitions, r.Recoveries, r.Checker.Checkpoints, r.Messages.Sent, r.Messages.DeadLettered, r.Messages.MalformedSent, r.Violations)
	for _, k := range slices.Sorted(maps.Keys(r.FaultsByKind)) {
		fmt.Fprintf(&b, "\n    %-20s %d", k, r.FaultsByKind[k])
	}
	for _, v := range r.ViolationDetails {
		b.WriteString("\n  " + v.String())
	}
	return b.String()
}

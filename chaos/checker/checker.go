// Package checker verifies weir's invariants from the outside: it reads the
// Jobs and Lease tables and the worker dead-letter queue directly through
// the AWS SDK, during a run and after it, and never uses the store, the
// lease or any decoder of the code under test. Attribute names are those of
// docs/data-model.md.
//
// During a run, Poll reads every item (a strongly consistent Scan) and
// compares it with what earlier polls saw:
//   - fences only grow, on every item and on the lease;
//   - no item changes while carrying a fence below one the job's items
//     carried before the previous poll began (a deposed controller's write
//     took effect);
//   - the epoch counter only grows, an epoch is never created twice, and a
//     checkpoint created under the job's current fence is above every
//     epoch seen before;
//   - every acknowledged config version is acted on (the status's
//     config_version reaches it) within a bound.
//
// After the run, Final checks that every job ended in the state its config
// asks for, and that every worker envelope was consumed: none is left in
// the queue, malformed ones are in the dead-letter queue.
package checker

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Violation is one broken invariant, with what it was seen on.
type Violation struct {
	Check  string    `json:"check"`
	Job    string    `json:"job,omitempty"`
	Detail string    `json:"detail"`
	Items  []string  `json:"items,omitempty"`
	Seed   uint64    `json:"seed"`
	At     time.Time `json:"at"`
}

func (v Violation) String() string {
	s := fmt.Sprintf("VIOLATION %s (seed %d) job %s: %s", v.Check, v.Seed, v.Job, v.Detail)
	for _, it := range v.Items {
		s += "\n    " + it
	}
	return s
}

// Config says where to look.
type Config struct {
	DynamoDB   *dynamodb.Client
	SQS        *sqs.Client
	JobsTable  string
	LeaseTable string
	QueueURL   string
	DLQURL     string
	// Seed is printed with every violation, to reproduce the run.
	Seed uint64
	// ConfigBound is how long an acknowledged config version may wait
	// before the status shows it was acted on (default 45 s).
	ConfigBound time.Duration
	// BoundFromCalm counts the bound of a version acknowledged before
	// Calm from Calm: while controllers are killed and paused faster than
	// the lease changes hands, no bound holds; once faults stop, every
	// version must be acted on within it. The longest wait is reported
	// either way (Stats.ConfigWaitMax).
	BoundFromCalm bool
}

// item is what one poll saw of one item: the raw attributes, plus the
// numbers the checks compare.
type item struct {
	attrs    map[string]types.AttributeValue
	fence    int64
	version  int64
	maxEpoch int64
	tokens   string // every write token the item carries, joined
	summary  string
}

// jobView is what the checker knows of one job.
type jobView struct {
	items map[string]item // by sort key, as of the last poll
	// fence is the highest fence any of the job's items carried up to the
	// last poll; fenceBefore is that value as of the poll before, which
	// bounds what a write seen changing in this poll may carry.
	fence, fenceBefore int64
	maxEpoch           int64
	// epochs: every checkpoint epoch ever seen, with its started_at, so a
	// deleted epoch created again is caught.
	epochs    map[int64]string
	highEpoch int64

	state        string
	restarts     int64
	transitions  int
	recoveries   int
	configAcked  map[int64]time.Time // version → when the write was acknowledged
	configActed  int64
	configLate   map[int64]bool // versions already reported late
	configDone   map[int64]bool // versions seen acted on
	lastStatus   string
	staleCreated int // late in-progress checkpoint items of a deposed controller
	// layouts: every run's subtasks ("op/subtask"), from the command
	// record's start command; readyChecked: ready epochs already checked.
	layouts      map[int64]map[string]bool
	readyChecked map[int64]bool
	readyCount   int
}

// Checker accumulates observations and violations. Safe for concurrent use.
type Checker struct {
	cfg Config

	// polling is held through a whole poll, read and comparison: polls
	// overlap (the periodic ones and Final's), and one whose read began
	// earlier must not be compared after one that began later, or an item
	// seems to go back to what it was (with that write's own token).
	polling sync.Mutex

	mu         sync.Mutex
	jobs       map[string]*jobView
	leaseFence map[string]int64
	leaseOwner map[string]map[int64]string // lease name → fence → owner
	violations []Violation
	polls      int
	calmSince  time.Time
	configWait time.Duration // the longest wait for a config version to be acted on
}

// Calm says faults stopped now (see Config.BoundFromCalm).
func (c *Checker) Calm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calmSince = time.Now()
}

// New returns a Checker for cfg.
func New(cfg Config) *Checker {
	if cfg.ConfigBound == 0 {
		cfg.ConfigBound = 45 * time.Second
	}
	return &Checker{
		cfg:        cfg,
		jobs:       map[string]*jobView{},
		leaseFence: map[string]int64{},
		leaseOwner: map[string]map[int64]string{},
	}
}

func (c *Checker) job(id string) *jobView {
	j := c.jobs[id]
	if j == nil {
		j = &jobView{items: map[string]item{}, epochs: map[int64]string{}, configAcked: map[int64]time.Time{}, configLate: map[int64]bool{}, configDone: map[int64]bool{},
			layouts: map[int64]map[string]bool{}, readyChecked: map[int64]bool{}}
		c.jobs[id] = j
	}
	return j
}

func (c *Checker) violate(check, jobID, detail string, items ...string) {
	v := Violation{Check: check, Job: jobID, Detail: detail, Items: items, Seed: c.cfg.Seed, At: time.Now().UTC()}
	c.violations = append(c.violations, v)
}

// Add records a violation found outside the tables and queues (in the
// controllers' logs, say).
func (c *Checker) Add(check, jobID, detail string, items ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violate(check, jobID, detail, items...)
}

// ConfigAcknowledged records that the config API acknowledged version of
// job: the controller must act on it.
func (c *Checker) ConfigAcknowledged(jobID string, version int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.job(jobID).configAcked[version] = time.Now()
}

// Run polls every interval until ctx ends.
func (c *Checker) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		// A failed poll is skipped: the checker reads through a client
		// without injected faults, and the next poll sees the same items.
		_ = c.Poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Poll reads both tables once and checks what changed. Polls run one at a
// time, each compared with the one before it.
func (c *Checker) Poll(ctx context.Context) error {
	c.polling.Lock()
	defer c.polling.Unlock()
	jobs, err := c.scan(ctx, c.cfg.JobsTable)
	if err != nil {
		return err
	}
	leases, err := c.scan(ctx, c.cfg.LeaseTable)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.polls++
	byJob := map[string]map[string]map[string]types.AttributeValue{}
	for _, it := range jobs {
		pk, sk := str(it, "pk"), str(it, "sk")
		id, ok := strings.CutPrefix(pk, "job#")
		if !ok {
			c.violate("foreign_item", "", fmt.Sprintf("item with partition key %q is not a job's", pk), describe(it))
			continue
		}
		if byJob[id] == nil {
			byJob[id] = map[string]map[string]types.AttributeValue{}
		}
		byJob[id][sk] = it
	}
	for id, items := range byJob {
		c.checkJob(id, items)
	}
	for _, it := range leases {
		c.checkLease(it)
	}
	c.checkConfigBound(time.Now())
	return nil
}

func (c *Checker) scan(ctx context.Context, table string) ([]map[string]types.AttributeValue, error) {
	var out []map[string]types.AttributeValue
	p := dynamodb.NewScanPaginator(c.cfg.DynamoDB, &dynamodb.ScanInput{TableName: &table, ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("checker: scan %s: %w", table, err)
		}
		out = append(out, page.Items...)
	}
	return out, nil
}

func (c *Checker) checkJob(id string, items map[string]map[string]types.AttributeValue) {
	j := c.job(id)
	bound := j.fenceBefore
	newFence := j.fence
	for sk, attrs := range items {
		now := observe(attrs)
		prev, seen := j.items[sk]
		if sk == "config" {
			j.items[sk] = now
			continue
		}
		if seen && now.fence < prev.fence {
			c.violate("fence_went_back", id, fmt.Sprintf("the fence of item %s went from %d back to %d", sk, prev.fence, now.fence), prev.summary, now.summary)
		}
		changed := !seen || now.tokens != prev.tokens || now.version != prev.version || now.maxEpoch != prev.maxEpoch
		if changed && now.fence < bound {
			if seen || !c.lateCheckpoint(j, sk, now) {
				c.violate("stale_write", id, fmt.Sprintf("item %s changed under fence %d after the job's items carried fence %d (a deposed controller's write took effect)", sk, now.fence, bound), prevSummary(prev, seen), now.summary)
			}
		}
		newFence = max(newFence, now.fence)
		if strings.HasPrefix(sk, "cp#") {
			c.checkCheckpoint(id, j, sk, now, seen, bound)
			c.checkReady(id, j, now)
		}
		if sk == "commands" {
			j.recordLayout(attrs)
		}
		j.items[sk] = now
	}
	for sk := range j.items {
		if _, ok := items[sk]; !ok {
			delete(j.items, sk) // deleted (checkpoint cleanup)
		}
	}
	if st, ok := items["status"]; ok {
		c.checkStatus(id, j, observe(st))
		// The scan reads a job's checkpoint items before its status item
		// (sort key order), and an epoch is reserved before its item is
		// written: every epoch seen must be within the counter.
		for sk, it := range j.items {
			if e, ok := num(it.attrs, "epoch"); ok && strings.HasPrefix(sk, "cp#") && e > j.maxEpoch {
				c.violate("epoch_unreserved", id, fmt.Sprintf("checkpoint %d exists above the epoch counter %d", e, j.maxEpoch), it.summary, j.lastStatus)
			}
		}
	}
	j.fenceBefore, j.fence = j.fence, newFence
}

// lateCheckpoint accepts the one write a deposed controller may still get
// in (docs/data-model.md, CreateCheckpoint): the item of an epoch it had
// reserved, created after its successor claimed the job. It must be in
// progress and below every epoch created under the successor's fence.
func (c *Checker) lateCheckpoint(j *jobView, sk string, it item) bool {
	if !strings.HasPrefix(sk, "cp#") || str(it.attrs, "state") != "in_progress" {
		return false
	}
	e, _ := num(it.attrs, "epoch")
	if e > j.highEpoch {
		return false
	}
	j.staleCreated++
	return true
}

func (c *Checker) checkCheckpoint(id string, j *jobView, sk string, it item, seen bool, bound int64) {
	e, ok := num(it.attrs, "epoch")
	if !ok {
		return // the fence a claim left on a reserved epoch
	}
	started := str(it.attrs, "started_at")
	if was, ok := j.epochs[e]; ok && was != started && !seen {
		c.violate("epoch_reused", id, fmt.Sprintf("epoch %d was created again (first started %s, now %s)", e, was, started), it.summary)
	}
	if !seen {
		if _, before := j.epochs[e]; !before && e <= j.highEpoch && it.fence >= bound && it.fence >= j.fence {
			c.violate("epoch_not_increasing", id, fmt.Sprintf("epoch %d was created under the job's current fence %d after epoch %d existed", e, it.fence, j.highEpoch), it.summary)
		}
		j.epochs[e] = started
		j.highEpoch = max(j.highEpoch, e)
	}
}

// recordLayout remembers the subtasks of the run the command record starts.
func (j *jobView) recordLayout(attrs map[string]types.AttributeValue) {
	run, ok := num(attrs, "run_id")
	start, _ := attrs["start"].(*types.AttributeValueMemberM)
	if !ok || start == nil || j.layouts[run] != nil {
		return
	}
	gz, _ := start.Value["assignments_gz"].(*types.AttributeValueMemberB)
	if gz == nil {
		return
	}
	var as []struct {
		Operator string `json:"operator_id"`
		Subtask  int    `json:"subtask"`
	}
	if err := gunzipJSON(gz.Value, &as); err != nil {
		return
	}
	layout := map[string]bool{}
	for _, a := range as {
		layout[fmt.Sprintf("%s/%d", a.Operator, a.Subtask)] = true
	}
	j.layouts[run] = layout
}

// checkReady checks a ready checkpoint against its run's layout: it is
// ready only when every subtask of every operator reported it.
func (c *Checker) checkReady(id string, j *jobView, it item) {
	e, ok := num(it.attrs, "epoch")
	if !ok || str(it.attrs, "state") != "ready" || j.readyChecked[e] {
		return
	}
	j.readyChecked[e] = true
	j.readyCount++
	run, _ := num(it.attrs, "run_id")
	layout := j.layouts[run]
	if layout == nil {
		return // the run started and ended between two polls
	}
	var ops map[string]struct {
		Metadata map[string]string `json:"metadata"`
	}
	gz, _ := it.attrs["operators_gz"].(*types.AttributeValueMemberB)
	if gz == nil || gunzipJSON(gz.Value, &ops) != nil {
		c.violate("checkpoint_ready_incomplete", id, fmt.Sprintf("checkpoint %d is ready without readable operator metadata", e), it.summary)
		return
	}
	var missing []string
	for task := range layout {
		op, sub, _ := strings.Cut(task, "/")
		if _, ok := ops[op].Metadata[sub]; !ok {
			missing = append(missing, task)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		c.violate("checkpoint_ready_incomplete", id, fmt.Sprintf("checkpoint %d of run %d is ready, but subtasks %v never reported it", e, run, missing), it.summary)
	}
}

func gunzipJSON(data []byte, v any) error {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	raw, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

func (c *Checker) checkStatus(id string, j *jobView, st item) {
	if st.maxEpoch < j.maxEpoch {
		c.violate("epoch_counter_went_back", id, fmt.Sprintf("max_epoch went from %d back to %d", j.maxEpoch, st.maxEpoch), st.summary)
	}
	j.maxEpoch = max(j.maxEpoch, st.maxEpoch)
	state := str(st.attrs, "state")
	if state != "" && state != j.state {
		j.transitions++
		if state == "Recovering" {
			j.recoveries++
		}
		j.state = state
	}
	if r, ok := num(st.attrs, "restarts"); ok {
		j.restarts = r
	}
	if v, ok := num(st.attrs, "config_version"); ok {
		j.configActed = max(j.configActed, v)
	}
	j.lastStatus = st.summary
}

func (c *Checker) checkConfigBound(now time.Time) {
	for id, j := range c.jobs {
		for v, at := range j.configAcked {
			if v <= j.configActed {
				if !j.configDone[v] {
					j.configDone[v] = true
					c.configWait = max(c.configWait, now.Sub(at))
				}
				continue
			}
			from := at
			if c.cfg.BoundFromCalm {
				if c.calmSince.IsZero() {
					continue
				}
				if c.calmSince.After(from) {
					from = c.calmSince
				}
			}
			if j.configLate[v] || now.Sub(from) <= c.cfg.ConfigBound {
				continue
			}
			j.configLate[v] = true
			c.violate("config_not_acted_on", id, fmt.Sprintf("config version %d was acknowledged %s ago; the status has acted on version %d", v, now.Sub(at).Round(time.Second), j.configActed), j.lastStatus)
		}
	}
}

func (c *Checker) checkLease(it map[string]types.AttributeValue) {
	name := str(it, "name")
	f, _ := num(it, "fence")
	owner := str(it, "owner")
	if f < c.leaseFence[name] {
		c.violate("lease_fence_went_back", "", fmt.Sprintf("lease %s: fence went from %d back to %d", name, c.leaseFence[name], f), describe(it))
	}
	c.leaseFence[name] = max(c.leaseFence[name], f)
	if c.leaseOwner[name] == nil {
		c.leaseOwner[name] = map[int64]string{}
	}
	if was, ok := c.leaseOwner[name][f]; ok && was != owner {
		c.violate("fence_granted_twice", "", fmt.Sprintf("lease %s: fence %d held by %s and by %s", name, f, was, owner), describe(it))
	}
	c.leaseOwner[name][f] = owner
}

// Expect is the state a job must end in.
type Expect struct {
	State string
	// ConfigVersion is the last config version written; the status must
	// have acted on it.
	ConfigVersion int64
	// RestartNonce and Parallelism, when the job is to run, are what its
	// status must show.
	RestartNonce string
	Parallelism  map[string]int
}

// Final polls until every job is as expected or bound passes, then
// records a violation per job that is not.
func (c *Checker) Final(ctx context.Context, expect map[string]Expect, bound time.Duration) {
	deadline := time.Now().Add(bound)
	for {
		_ = c.Poll(ctx)
		bad := c.unmet(expect)
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.mu.Lock()
			for _, id := range slices.Sorted(maps.Keys(bad)) {
				c.violate("end_state", id, bad[id], c.job(id).lastStatus)
			}
			c.mu.Unlock()
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (c *Checker) unmet(expect map[string]Expect) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	bad := map[string]string{}
	for id, want := range expect {
		j := c.job(id)
		st, ok := j.items["status"]
		if !ok {
			bad[id] = "no status was ever written"
			continue
		}
		got := str(st.attrs, "state")
		cv, _ := num(st.attrs, "config_version")
		switch {
		case got != want.State:
			bad[id] = fmt.Sprintf("state %s, want %s (config version %d)", got, want.State, want.ConfigVersion)
		case cv < want.ConfigVersion:
			bad[id] = fmt.Sprintf("acted on config version %d, want %d", cv, want.ConfigVersion)
		case want.State == "Running" && str(st.attrs, "restart_nonce") != want.RestartNonce:
			bad[id] = fmt.Sprintf("running with restart nonce %q, want %q", str(st.attrs, "restart_nonce"), want.RestartNonce)
		case want.State == "Running" && !sameParallelism(st.attrs["parallelism"], want.Parallelism):
			bad[id] = fmt.Sprintf("running with parallelism %s, want %v", describeValue(st.attrs["parallelism"]), want.Parallelism)
		}
	}
	return bad
}

func sameParallelism(av types.AttributeValue, want map[string]int) bool {
	m, _ := av.(*types.AttributeValueMemberM)
	for op, p := range want {
		if m == nil {
			return false
		}
		n, ok := num(m.Value, op)
		if !ok || n != int64(p) {
			return false
		}
	}
	return true
}

// Messages is what became of the worker envelopes a run sent.
type Messages struct {
	Sent          int `json:"sent"`
	MalformedSent int `json:"malformed_sent"`
	Left          int `json:"left_in_queue"`
	// LeftStale are envelopes left in the queue from runs before their
	// job's current one: provably stale, so accounted for, but a leader
	// should have dropped them.
	LeftStale      int      `json:"left_in_queue_stale"`
	LeftStaleIDs   []string `json:"left_in_queue_stale_ids,omitempty"`
	DeadLettered   int      `json:"dead_lettered"`
	DeadMalformed  int      `json:"dead_lettered_malformed"`
	DeadValid      int      `json:"dead_lettered_valid"`
	MalformedLost  int      `json:"malformed_not_dead_lettered"`
	ConsumedByLead int      `json:"consumed"`
	// DeadValidIDs names the well-formed envelopes that were dead-lettered
	// (received maxReceiveCount times without an acknowledgement). They
	// count as accounted for, but each is worth a look.
	DeadValidIDs []string `json:"dead_lettered_valid_ids,omitempty"`
}

// Drain checks the queues at the end of a run, once the workers have
// stopped sending: within bound the leader must consume every envelope
// (each was applied or judged stale and acknowledged), and each malformed
// one must be in the dead-letter queue. stop is called before the queues
// are read, so nothing competes for what is left; what is left is named
// (job, run, worker, seq) in the violation. isMalformed tells a body the
// run sent on purpose as poison.
func (c *Checker) Drain(ctx context.Context, sent, malformed int, isMalformed func(body string) bool, bound time.Duration, stop func()) Messages {
	m := Messages{Sent: sent, MalformedSent: malformed}
	deadline := time.Now().Add(bound)
	for {
		left, err := c.queueDepth(ctx, c.cfg.QueueURL)
		if err == nil {
			m.Left = left
		}
		if (err == nil && left == 0) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	stop()
	var leftover []string
	var readErrs []string
	if m.Left > 0 {
		bodies, err := c.readAll(ctx, c.cfg.QueueURL)
		if err != nil {
			readErrs = append(readErrs, err.Error())
		}
		c.mu.Lock()
		for _, b := range bodies {
			if c.stale(b) {
				m.LeftStale++
				m.LeftStaleIDs = append(m.LeftStaleIDs, envelopeID(b))
				continue
			}
			leftover = append(leftover, envelopeID(b))
		}
		c.mu.Unlock()
		slices.Sort(leftover)
		slices.Sort(m.LeftStaleIDs)
	}
	bodies, err := c.readAll(ctx, c.cfg.DLQURL)
	if err != nil {
		readErrs = append(readErrs, err.Error())
	}
	var deadValid []string
	for _, b := range bodies {
		m.DeadLettered++
		if isMalformed(b) {
			m.DeadMalformed++
		} else {
			m.DeadValid++
			deadValid = append(deadValid, envelopeID(b))
		}
	}
	m.MalformedLost = malformed - m.DeadMalformed
	m.ConsumedByLead = sent - m.Left - m.DeadLettered
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(leftover) > 0 {
		c.violate("message_not_consumed", "", fmt.Sprintf("%d envelopes of current runs were still in the worker queue %s after the workers stopped, with a leader running", len(leftover), bound), leftover...)
	}
	if m.MalformedLost > 0 {
		c.violate("malformed_not_dead_lettered", "", fmt.Sprintf("%d of %d malformed envelopes never reached the dead-letter queue", m.MalformedLost, malformed), readErrs...)
	}
	m.DeadValidIDs = deadValid
	return m
}

// stale reports whether body is an envelope of a run before its job's
// current one: provably stale, whatever became of it. c.mu is held.
func (c *Checker) stale(body string) bool {
	var e struct {
		Job string `json:"job"`
		Run int64  `json:"run"`
	}
	if json.Unmarshal([]byte(body), &e) != nil {
		return false
	}
	j := c.jobs[e.Job]
	if j == nil {
		return false
	}
	run, _ := num(j.items["status"].attrs, "run_id")
	return e.Run < run
}

// envelopeID names an envelope by its job, run, worker and sequence
// number, read without the protocol package.
func envelopeID(body string) string {
	var e struct {
		Job    string `json:"job"`
		Run    int64  `json:"run"`
		Worker string `json:"worker"`
		Seq    uint64 `json:"seq"`
	}
	if json.Unmarshal([]byte(body), &e) != nil || e.Job == "" {
		if len(body) > 80 {
			body = body[:80] + "…"
		}
		return "unreadable: " + body
	}
	return fmt.Sprintf("job %s run %d worker %s seq %d", e.Job, e.Run, e.Worker, e.Seq)
}

// queueDepth counts visible and in-flight messages.
func (c *Checker) queueDepth(ctx context.Context, url string) (int, error) {
	out, err := c.cfg.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: &url,
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return 0, fmt.Errorf("checker: attributes of %s: %w", url, err)
	}
	n := 0
	for _, v := range out.Attributes {
		k, _ := strconv.Atoi(v)
		n += k
	}
	return n, nil
}

// readAll receives every message of a queue (hiding each for a minute, so
// none is counted twice).
func (c *Checker) readAll(ctx context.Context, url string) ([]string, error) {
	var bodies []string
	for {
		out, err := c.cfg.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: &url, MaxNumberOfMessages: 10, VisibilityTimeout: 60, WaitTimeSeconds: 0,
		})
		if err != nil {
			return bodies, fmt.Errorf("checker: receive from %s: %w", url, err)
		}
		if len(out.Messages) == 0 {
			return bodies, nil
		}
		for _, msg := range out.Messages {
			bodies = append(bodies, aws.ToString(msg.Body))
		}
	}
}

// Stats are the figures a report gives.
type Stats struct {
	Polls        int `json:"polls"`
	Transitions  int `json:"transitions"`
	Recoveries   int `json:"recoveries"`
	Restarts     int `json:"restarts"`
	Checkpoints  int `json:"checkpoints_created"`
	Ready        int `json:"checkpoints_ready"`
	LateStale    int `json:"late_checkpoint_items_of_deposed_leaders"`
	LeaseFence   int `json:"lease_fence"`
	ConfigWrites int `json:"config_versions_acknowledged"`
	// ConfigWaitMax is the longest an acknowledged config version waited
	// to be acted on (as polls saw it).
	ConfigWaitMax string `json:"config_wait_max"`
	// LeaseHolders: which owner held each fence.
	LeaseHolders map[string]string `json:"lease_holders"`
}

// Stats sums the observations.
func (c *Checker) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{Polls: c.polls, ConfigWaitMax: c.configWait.Round(100 * time.Millisecond).String()}
	for _, j := range c.jobs {
		s.Transitions += j.transitions
		s.Recoveries += j.recoveries
		s.Restarts += int(j.restarts)
		s.Checkpoints += len(j.epochs)
		s.Ready += j.readyCount
		s.LateStale += j.staleCreated
		s.ConfigWrites += len(j.configAcked)
	}
	for _, f := range c.leaseFence {
		s.LeaseFence = max(s.LeaseFence, int(f))
	}
	s.LeaseHolders = map[string]string{}
	for _, byFence := range c.leaseOwner {
		for f, owner := range byFence {
			s.LeaseHolders[strconv.FormatInt(f, 10)] = owner
		}
	}
	return s
}

// Violations returns what was found so far.
func (c *Checker) Violations() []Violation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.violations)
}

func observe(attrs map[string]types.AttributeValue) item {
	it := item{attrs: attrs}
	it.fence, _ = num(attrs, "fence")
	it.version, _ = num(attrs, "version")
	it.maxEpoch, _ = num(attrs, "max_epoch")
	it.tokens = str(attrs, "wtok") + "/" + str(attrs, "etok") + "/" + str(attrs, "ttok")
	it.summary = describe(attrs)
	return it
}

func prevSummary(prev item, seen bool) string {
	if !seen {
		return "(not there before)"
	}
	return "before: " + prev.summary
}

// describe prints the attributes a reader of a violation needs.
func describe(attrs map[string]types.AttributeValue) string {
	var b strings.Builder
	for _, k := range []string{"pk", "sk", "name", "owner", "fence", "version", "max_epoch", "wtok", "etok", "ttok", "state", "run_id", "epoch", "config_version", "restarts", "restart_nonce"} {
		if v, ok := attrs[k]; ok {
			fmt.Fprintf(&b, "%s=%s ", k, describeValue(v))
		}
	}
	return strings.TrimSpace(b.String())
}

func describeValue(v types.AttributeValue) string {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return strconv.Quote(v.Value)
	case *types.AttributeValueMemberN:
		return v.Value
	case *types.AttributeValueMemberBOOL:
		return strconv.FormatBool(v.Value)
	case *types.AttributeValueMemberM:
		parts := make([]string, 0, len(v.Value))
		for _, k := range slices.Sorted(maps.Keys(v.Value)) {
			parts = append(parts, k+":"+describeValue(v.Value[k]))
		}
		return "{" + strings.Join(parts, " ") + "}"
	case nil:
		return "(none)"
	}
	return fmt.Sprintf("%T", v)
}

func str(attrs map[string]types.AttributeValue, name string) string {
	if v, ok := attrs[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func num(attrs map[string]types.AttributeValue, name string) (int64, bool) {
	v, ok := attrs[name].(*types.AttributeValueMemberN)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v.Value, 10, 64)
	return n, err == nil
}

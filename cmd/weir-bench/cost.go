package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/weirstream/weir/core/clock"
	"github.com/weirstream/weir/core/inbox"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/manager"
	"github.com/weirstream/weir/core/protocol"
	"github.com/weirstream/weir/infra/accounting"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/sqs"
	"github.com/weirstream/weir/worker"
)

const month = 30 * 24 * time.Hour

// Cost-run shape: ten jobs share a controller; checkpoints every 2 s so a
// short run sees many of them.
const (
	costJobs       = 10
	costCheckpoint = 2 * time.Second
	// DefaultReceiveLinger is the SQS inbox's Linger weir-controller sets
	// by default (see docs/operations.md): a receive that came back partly
	// full waits this long before the next one, so messages gather.
	DefaultReceiveLinger = sqs.DefaultReceiveLinger
	// commandIdleRead is the worker SDK's ceiling on the interval between
	// reads of the command record while nothing changes
	// (worker.DefaultSlowRead), printed with the report.
	commandIdleRead = worker.DefaultSlowRead
)

// CostAtInterval is the monthly cost of one 10-worker job at one
// checkpoint interval.
type CostAtInterval struct {
	CheckpointIntervalSeconds float64     `json:"checkpoint_interval_seconds"`
	Worker                    WorkerRates `json:"worker"`
	// Receives and deletes, measured with ten jobs at this interval.
	Batching            Batching           `json:"batching"`
	RequestsPerJobMonth map[string]float64 `json:"requests_per_job_month"`
	USDByOperation      map[string]float64 `json:"usd_by_operation"`
	USDPerJobMonth      float64            `json:"usd_per_job_month"`
}

// CostReport is the cost section of the report.
type CostReport struct {
	Prices                     accounting.Prices  `json:"prices"`
	HeartbeatIntervalSeconds   float64            `json:"heartbeat_interval_seconds"`
	CommandIdleReadSeconds     float64            `json:"command_idle_read_seconds"`
	ReceiveLingerMs            float64            `json:"receive_linger_ms"`
	AckLingerMs                float64            `json:"ack_linger_ms"`
	SharedJobs                 int                `json:"jobs_sharing_the_controller"`
	MessagesMeasured           int64              `json:"messages_measured"`
	CheckpointsMeasured        int64              `json:"checkpoints_measured"`
	ReceiveDeletePerMessage    float64            `json:"receive_delete_billed_per_message"`
	MessagesPerReceive         float64            `json:"messages_per_receive"`
	MessagesPerDelete          float64            `json:"messages_per_delete"`
	ControllerStorePerCkpt     map[string]float64 `json:"controller_store_requests_per_checkpoint"`
	CommandRecordBytes         int                `json:"command_record_bytes"`
	Intervals                  []CostAtInterval   `json:"intervals"`
	USDPerControllerMonth      float64            `json:"usd_per_controller_month"`
	ControllerRequestsPerMonth map[string]float64 `json:"controller_requests_per_month"`
}

// Batching is how many messages a receive and a batch delete carried in a
// run of ten jobs sharing a controller.
type Batching struct {
	MessagesMeasured        int64   `json:"messages_measured"`
	MessagesPerSecond       float64 `json:"messages_per_second"`
	MessagesPerReceive      float64 `json:"messages_per_receive"`
	MessagesPerDelete       float64 `json:"messages_per_delete"`
	ReceiveDeletePerMessage float64 `json:"receive_delete_billed_per_message"`
}

func batchingOf(u loadUsage) Batching {
	msgs := float64(u.inbox.Delivered)
	b := Batching{MessagesMeasured: int64(u.inbox.Delivered), MessagesPerSecond: msgs / max(u.seconds, 1e-9)}
	if msgs > 0 {
		b.MessagesPerReceive = msgs / float64(max(1, u.inbox.Receives))
		b.MessagesPerDelete = float64(u.inbox.Acked) / float64(max(1, u.inbox.AckCalls))
		b.ReceiveDeletePerMessage = float64(u.inbox.Receives+u.inbox.AckCalls) / msgs
	}
	return b
}

// lingerInbox makes the in-memory inbox receive as the SQS inbox does
// with a Linger: one poller at a time while receives come back short, and
// after a batch that was not full the next receive waits.
type lingerInbox struct {
	inbox.Inbox
	linger time.Duration
	mu     *sync.Mutex
}

func (l lingerInbox) Receive(ctx context.Context) ([]inbox.Delivery, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ds, err := l.Inbox.Receive(ctx)
	if err == nil && len(ds) > 0 && len(ds) < inbox.MaxBatch {
		clock.Sleep(ctx, clock.Real{}, l.linger)
	}
	return ds, err
}

// costReport runs ten jobs on one controller, counts the requests each
// port call makes, splits them into what a checkpoint costs and what time
// costs, and prices a month at each checkpoint interval.
func costReport(ctx context.Context, log *slog.Logger, latency, receiveLinger, ackLinger time.Duration) (*CostReport, error) {
	r, err := runLoad(ctx, loadOptions{jobs: costJobs, latency: latency, warmup: 25 * time.Second, window: 30 * time.Second,
		readEvery: 100 * time.Millisecond, checkpoint: costCheckpoint, takeover: time.Minute, linger: receiveLinger,
		ackLinger: ackLinger, sizes: true}, log)
	if err != nil {
		return nil, fmt.Errorf("cost run: %w", err)
	}
	u := r.usage
	if u.checkpoints == 0 {
		return nil, fmt.Errorf("cost run: no checkpoint was taken in %.0f s", u.seconds)
	}
	p := accounting.USEast1
	hb := protocol.DefaultHeartbeatInterval
	rep := &CostReport{
		Prices: p, HeartbeatIntervalSeconds: hb.Seconds(), CommandIdleReadSeconds: commandIdleRead.Seconds(),
		ReceiveLingerMs: ms(receiveLinger), AckLingerMs: ms(max(0, ackLinger)), SharedJobs: costJobs,
		CheckpointsMeasured:    u.checkpoints,
		ControllerStorePerCkpt: map[string]float64{},
	}
	// What the controller's store calls cost per checkpoint, from the run;
	// the index poll is the controller's, not the checkpoints'.
	ckpts := float64(u.checkpoints)
	storeUnitsPerCkpt := map[string]float64{}
	for name, n := range u.store {
		if name == opIndexPoll {
			continue
		}
		rep.ControllerStorePerCkpt[name] = float64(n) / ckpts
		storeUnitsPerCkpt[name] = u.storeUnits[name] / ckpts
	}
	rep.CommandRecordBytes = int(u.commandsBytes)
	for _, interval := range []time.Duration{10 * time.Second, 60 * time.Second} {
		rates, err := workerRates(interval)
		if err != nil {
			return nil, err
		}
		// Batching depends on the message rate, so it is measured at each
		// interval's own: ten jobs, their workers reading at about the
		// SDK's fast pace, for at least one checkpoint of every job.
		br, err := runLoad(ctx, loadOptions{jobs: costJobs, latency: latency, warmup: 10 * time.Second,
			window: max(30*time.Second, interval+10*time.Second), readEvery: worker.DefaultFastRead, checkpoint: interval,
			takeover: time.Minute, linger: receiveLinger, ackLinger: ackLinger}, log)
		if err != nil {
			return nil, fmt.Errorf("batching run at %s checkpoints: %w", interval, err)
		}
		b := batchingOf(br.usage)
		if b.MessagesMeasured == 0 {
			return nil, fmt.Errorf("batching run at %s checkpoints: no message arrived", interval)
		}
		if interval == job.DefaultCheckpointInterval {
			rep.MessagesMeasured, rep.MessagesPerReceive, rep.MessagesPerDelete, rep.ReceiveDeletePerMessage =
				b.MessagesMeasured, b.MessagesPerReceive, b.MessagesPerDelete, b.ReceiveDeletePerMessage
		}
		rep.Intervals = append(rep.Intervals, jobMonth(p, rates, b, rep, storeUnitsPerCkpt))
	}
	rep.ControllerRequestsPerMonth, rep.USDPerControllerMonth = controllerMonth(p)
	return rep, nil
}

const opIndexPoll = "dynamodb.Query active index"

// jobMonth prices a month of one 10-worker job at one checkpoint
// interval: what the SDK's workers send and read at that interval (run on
// a fake clock), the receives and deletes of what they send, and the
// controller's store calls per checkpoint as counted in the cost run.
func jobMonth(p accounting.Prices, w WorkerRates, b Batching, rep *CostReport, storeUnitsPerCkpt map[string]float64) CostAtInterval {
	interval := time.Duration(w.CheckpointIntervalSeconds * float64(time.Second))
	c := CostAtInterval{CheckpointIntervalSeconds: interval.Seconds(), Worker: w, Batching: b, RequestsPerJobMonth: map[string]float64{}, USDByOperation: map[string]float64{}}
	ckpts := month.Seconds() / interval.Seconds()
	workerMinutes := workersPerJob * month.Minutes()
	add := func(name string, requests, usd float64) {
		c.RequestsPerJobMonth[name] += requests
		c.USDByOperation[name] += usd
		c.USDPerJobMonth += usd
	}
	sends := workerMinutes * w.SendsPerMinute
	add("sqs.SendMessage", sends, sends*p.SQSRequest)
	recv := sends / b.MessagesPerReceive
	del := sends / b.MessagesPerDelete
	add("sqs.ReceiveMessage", recv, recv*p.SQSRequest)
	add("sqs.DeleteMessageBatch", del, del*p.SQSRequest)
	// Workers' reads of the command record: eventually consistent, half a
	// read unit per started 4 KB of the item.
	reads := workerMinutes * w.ReadsPerMinute
	units := 0.5 * float64(max(1, (rep.CommandRecordBytes+4095)/4096))
	add("dynamodb.GetItem commands (workers)", reads, reads*units*p.DynamoDBReadUnit)
	for _, name := range slices.Sorted(maps.Keys(rep.ControllerStorePerCkpt)) {
		n := rep.ControllerStorePerCkpt[name] * ckpts
		units := storeUnitsPerCkpt[name] * ckpts
		price := p.DynamoDBWriteUnit
		if isRead(name) {
			price = p.DynamoDBReadUnit
		}
		add(name, n, units*price)
	}
	return c
}

func isRead(name string) bool {
	for _, prefix := range []string{"dynamodb.GetItem", "dynamodb.Query"} {
		if len(name) >= len(prefix) && name[:len(prefix)] == prefix {
			return true
		}
	}
	return false
}

// urgentQueueWait is the long-poll wait of the controller's one receiver
// on the urgent worker queue (the SQS inbox's default and SQS's maximum).
const urgentQueueWait = 20 * time.Second

// controllerMonth is what one controller costs whatever its jobs: lease
// renewals (a conditional write of a small item every renew interval),
// polls of the active index (a query every poll interval; with few jobs
// under 4 KB, eventually consistent) and the idle long polls of the urgent
// worker queue (one receive per wait: its rare messages add a receive and
// a delete each, too few to count).
func controllerMonth(p accounting.Prices) (map[string]float64, float64) {
	renewals := month.Seconds() / dynamo.DefaultRenewInterval.Seconds()
	polls := month.Seconds() / manager.DefaultPollInterval.Seconds()
	urgentPolls := month.Seconds() / urgentQueueWait.Seconds()
	reqs := map[string]float64{
		"dynamodb.UpdateItem lease":      renewals,
		opIndexPoll:                      polls,
		"sqs.ReceiveMessage urgent idle": urgentPolls,
	}
	usd := renewals*p.DynamoDBWriteUnit + polls*0.5*p.DynamoDBReadUnit + urgentPolls*p.SQSRequest
	return reqs, usd
}

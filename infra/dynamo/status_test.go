package dynamo

import (
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/core/store/storetest"
)

// The status is written at most once a minute on a healthy job; with its
// health summary it must still cost one write unit (1 KB), or that write
// doubles in price. A job of a dozen operators and a long last error is the
// case to fit.
func TestStatusWithHealthFitsOneWriteUnit(t *testing.T) {
	st := storetest.Status("orders-enrichment-eu-west-1")
	st.Parallelism = map[string]int{}
	for _, op := range []string{"kafka-source", "parse", "filter", "enrich", "dedupe", "window", "aggregate", "join", "format", "route", "s3-sink", "dlq-sink"} {
		st.Parallelism[op] = 64
	}
	st.Failure = &job.Failure{
		Message: "task enrich[17] on worker orders-enrichment-eu-west-1-r12-w-13 failed: " + strings.Repeat("x", 200),
		Domain:  job.DomainUser, At: time.Now().UTC(),
	}
	st.Health = job.Health{
		HeartbeatAt:      time.Now().UTC().Truncate(time.Millisecond),
		RecordsInPerSec:  123456.78,
		RecordsOutPerSec: 123456.78,
		TakenAt:          time.Now().UTC().Truncate(time.Millisecond),
	}
	item, err := marshal(statusItem{PK: jobKey(st.JobID), SK: skStatus, Fence: 1 << 40, Token: newToken(), Status: st})
	if err != nil {
		t.Fatal(err)
	}
	if n := itemSize(item) + statusHeadroom; n > 1024 {
		t.Errorf("status item takes %d bytes, over one write unit (1,024)", n)
	}
	var back statusItem
	if err := unmarshal(item, &back); err != nil {
		t.Fatal(err)
	}
	if back.Health != st.Health || !back.Failure.At.Equal(st.Failure.At) {
		t.Errorf("health read back as %+v, want %+v", back.Health, st.Health)
	}
}

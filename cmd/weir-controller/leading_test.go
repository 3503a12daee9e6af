package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/core/clock"
)

// syncBuffer is a bytes.Buffer safe for the reporter's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

// The leader writes one embedded-metric line a minute, in the shape
// CloudWatch Logs turns into weir/Leading{Stack}; a standby writes none.
func TestLeaderReportsLeadingInEmbeddedMetricFormat(t *testing.T) {
	for _, leader := range []bool{false, true} {
		var out syncBuffer
		log := slog.New(slog.NewJSONHandler(&out, nil))
		clk := clock.NewFake(time.Unix(1_800_000_000, 0))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			reportLeading(ctx, log, clk, "prod", func() bool { return leader })
		}()
		for clk.Waiters() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
		<-done
		lines := out.lines()
		if !leader {
			if len(lines) != 1 || lines[0] != "" {
				t.Fatalf("a standby wrote %q", lines)
			}
			continue
		}
		if len(lines) != 1 {
			t.Fatalf("%d lines, want 1: %q", len(lines), lines)
		}
		var rec struct {
			AWS struct {
				Timestamp         int64
				CloudWatchMetrics []struct {
					Namespace  string
					Dimensions [][]string
					Metrics    []struct{ Name string }
				}
			} `json:"_aws"`
			Stack   string
			Leading int
		}
		if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
			t.Fatal(err)
		}
		m := rec.AWS.CloudWatchMetrics
		if rec.Stack != "prod" || rec.Leading != 1 || rec.AWS.Timestamp != clk.Now().UnixMilli() ||
			len(m) != 1 || m[0].Namespace != "weir" || len(m[0].Metrics) != 1 || m[0].Metrics[0].Name != "Leading" ||
			len(m[0].Dimensions) != 1 || m[0].Dimensions[0][0] != "Stack" {
			t.Fatalf("line %s is not weir/Leading{Stack=prod} = 1 in embedded metric format", lines[0])
		}
	}
}

// Without a stack name (running locally) nothing is reported.
func TestNoLeadingReportWithoutAStack(t *testing.T) {
	var out syncBuffer
	reportLeading(context.Background(), slog.New(slog.NewJSONHandler(&out, nil)), clock.NewFake(time.Unix(0, 0)), "", func() bool { return true })
	if l := out.lines(); len(l) != 1 || l[0] != "" {
		t.Fatalf("wrote %q without a stack", l)
	}
}

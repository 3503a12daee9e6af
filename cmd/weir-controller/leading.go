package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/weirstream/weir/core/clock"
)

// envStack names the stack the controller belongs to (the template sets
// it). With it set, the leader reports Leading as a CloudWatch metric.
const envStack = "WEIR_STACK"

// leadingInterval is how often the leader reports Leading; the template's
// no-leader alarm expects a data point every minute.
const leadingInterval = time.Minute

// reportLeading writes, once a minute while this controller leads, a log
// line in CloudWatch's embedded metric format: CloudWatch Logs turns it
// into the metric weir/Leading{Stack}, whose absence for three minutes
// raises the stack's no-leader alarm. It needs no permission beyond
// writing logs, which the task already has.
func reportLeading(ctx context.Context, log *slog.Logger, clk clock.Clock, stack string, leading func() bool) {
	if stack == "" {
		return
	}
	t := clk.NewTicker(leadingInterval)
	defer t.Stop()
	for {
		if leading() {
			log.Info("leading", emf(clk.Now(), stack)...)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// emf returns the attributes of one Leading data point in the embedded
// metric format: the _aws metadata names the metric, its namespace and
// dimension, and the values sit at the top level of the line.
func emf(now time.Time, stack string) []any {
	return []any{
		slog.Any("_aws", map[string]any{
			"Timestamp": now.UnixMilli(),
			"CloudWatchMetrics": []map[string]any{{
				"Namespace":  "weir",
				"Dimensions": [][]string{{"Stack"}},
				"Metrics":    []map[string]string{{"Name": "Leading", "Unit": "Count"}},
			}},
		}),
		slog.String("Stack", stack),
		slog.Int("Leading", 1),
	}
}

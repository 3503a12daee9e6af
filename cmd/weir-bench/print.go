package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
)

func printReport(w io.Writer, r *Report) {
	fmt.Fprintf(w, "weir-bench  %s  %d CPUs  store latency %.0f ms\n\n", r.GoVersion, r.CPUs, r.StoreLatencyMs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "jobs\tCPU s/s\tsim\tctl\tctl proj.\theap/job\tmsg/s exp.\tin\thandled\tbacklog\tticks/s exp.\tran\ttick p99\tmax\tprobe p99\tfail→rec p50\tp99\ttake-over\tload avg\t")
	for _, l := range r.Load {
		fmt.Fprintf(tw, "%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f KB\t%.0f\t%.0f\t%.0f\t%d\t%.0f\t%.0f\t%.1f ms\t%.1f ms\t%.1f ms\t%.0f ms\t%.0f ms\t%.2f s\t%.1f\t\n",
			l.Jobs, l.CPUSecondsPerSecond, l.SimCPUSecondsPerSecond, l.ControllerCPUPerSecond, l.ProjectedCPUPerSecond, l.HeapBytesPerJob/1024,
			l.MessagesPerSecondExpected, l.MessagesPerSecondIn, l.MessagesPerSecondDone, l.Backlog, l.TicksPerSecondExpected, l.TicksPerSecond,
			l.TickLateP99Ms, l.TickLateMaxMs, l.ProbeLateP99Ms, l.FailToRecoveringP50Ms, l.FailToRecoveringP99Ms, l.TakeoverSeconds, l.LoadAverage)
	}
	tw.Flush()
	for _, l := range r.Load {
		if l.CPUMicrosPerTick > 0 {
			fmt.Fprintf(w, "%d jobs: controller CPU %.1f µs per tick, %.1f µs per message; stacks %.1f KB per job\n",
				l.Jobs, l.CPUMicrosPerTick, l.CPUMicrosPerMessage, l.StackBytesPerJob/1024)
		}
	}
	if r.DecodeNs > 0 {
		fmt.Fprintf(w, "\ndecode: %.0f ns (median of %d runs, %.0f to %.0f) and %d allocations per %d-byte heartbeat envelope on one core; %.0f ns per envelope on all %d\n",
			r.DecodeNs, decodeRuns, r.DecodeNsMin, r.DecodeNsMax, r.DecodeAllocs, r.DecodeBytes, r.DecodeParallelNs, r.CPUs)
	}
	if r.TakeoverJobs > 0 {
		fmt.Fprintf(w, "take-over: %d jobs (%d checkpoints each) adopted in %.2f s using %.2f CPU s, %.2f store requests per job (%.0f ms per request, at most %d in flight)\n",
			r.TakeoverJobs, r.TakeoverCheckpoints, r.TakeoverSeconds, r.TakeoverCPUSeconds, r.TakeoverRequestsPerJob, r.StoreLatencyMs, r.StoreConcurrency)
	}
	c := r.Cost
	if c == nil {
		return
	}
	fmt.Fprintf(w, "\ncost at %s list prices, %d jobs sharing a controller, heartbeat every %.0f s, the worker SDK's read schedule (at most %.0f s apart), a %d-byte command record\n",
		c.Prices.Region, c.SharedJobs, c.HeartbeatIntervalSeconds, c.CommandIdleReadSeconds, c.CommandRecordBytes)
	for _, iv := range c.Intervals {
		fmt.Fprintf(w, "SDK worker at %.0f s checkpoints: %.2f sends and %.2f command reads per minute; a checkpoint reaches the program %.0f ms after it is written\n",
			iv.CheckpointIntervalSeconds, iv.Worker.SendsPerMinute, iv.Worker.ReadsPerMinute, iv.Worker.CheckpointStartLagMs)
	}
	for _, iv := range c.Intervals {
		b := iv.Batching
		fmt.Fprintf(w, "receives+deletes at %.0f s checkpoints: %.3f billed requests per message (%.1f messages a second; %.1f per receive, %.1f per delete; linger %.0f ms, ack linger %.0f ms)\n",
			iv.CheckpointIntervalSeconds, b.ReceiveDeletePerMessage, b.MessagesPerSecond, b.MessagesPerReceive, b.MessagesPerDelete, c.ReceiveLingerMs, c.AckLingerMs)
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "per 10-worker job-month"
	names := map[string]bool{}
	for _, iv := range c.Intervals {
		header += fmt.Sprintf("\t%.0f s checkpoints\t", iv.CheckpointIntervalSeconds)
		for n := range iv.RequestsPerJobMonth {
			names[n] = true
		}
	}
	fmt.Fprintln(tw, header)
	for _, n := range slices.Sorted(maps.Keys(names)) {
		line := n
		for _, iv := range c.Intervals {
			line += fmt.Sprintf("\t%.0f\t$%.3f", iv.RequestsPerJobMonth[n], iv.USDByOperation[n])
		}
		fmt.Fprintln(tw, line)
	}
	line := "total"
	for _, iv := range c.Intervals {
		line += fmt.Sprintf("\t\t$%.2f", iv.USDPerJobMonth)
	}
	fmt.Fprintln(tw, line)
	tw.Flush()
	fmt.Fprintf(w, "per controller-month: $%.2f (", c.USDPerControllerMonth)
	for i, n := range slices.Sorted(maps.Keys(c.ControllerRequestsPerMonth)) {
		if i > 0 {
			fmt.Fprint(w, ", ")
		}
		fmt.Fprintf(w, "%s %.0f", n, c.ControllerRequestsPerMonth[n])
	}
	fmt.Fprintln(w, ")")
}

package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/cmd/weirctl/internal/client"
)

func (a *app) watchCommand() *cobra.Command {
	var interval, limit time.Duration
	cmd := &cobra.Command{
		Use:   "watch [ID]",
		Short: "Follow jobs live: state, epochs, restarts, heartbeats, errors",
		Long: `Follow one job, or every job, until Ctrl-C. On a terminal the view is
redrawn in place; piped, it prints a line (with -o json, a JSON object) each
time a job's state, run, restarts, last ready epoch, stop or last error changes.

Columns: state and time in it, run id, restarts, last ready epoch and its age,
heartbeat age (of the run's least recently heard worker), records per second
in/out, last error and its age. The controller writes these with the job's
status (at most once a minute while it runs steadily, and on every state
change); ages are computed when weirctl reads them. Watching every job costs
one request per page of 100 jobs per interval.`,
		Example: "  weirctl watch demo\n  weirctl watch --for 1m -o json | jq -c '{state, last_ready_epoch}'",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("watch follows one job or all of them: give at most one ID, got %q", args)
			}
			return nil
		},
		PreRunE: func(*cobra.Command, []string) error {
			if interval < 100*time.Millisecond {
				return usagef("--interval %s is too short: use 100ms or more", interval)
			}
			if limit < 0 {
				return usagef("--for %s is negative: use 0 to watch until Ctrl-C", limit)
			}
			return nil
		},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			w := &watcher{a: a, c: c, last: map[string]string{}, interval: interval}
			if len(args) == 1 {
				w.id = args[0]
			}
			if limit > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, limit)
				defer cancel()
			}
			return w.run(ctx)
		}),
	}
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often to read the jobs")
	cmd.Flags().DurationVar(&limit, "for", 0, "stop watching after this long (default: until Ctrl-C)")
	return cmd
}

// watcher follows jobs until its context ends.
type watcher struct {
	a        *app
	c        *client.Client
	id       string // empty: every job
	interval time.Duration
	// drawn is how many lines the last frame took on the terminal.
	drawn int
	// last holds, per job, what the previous plain line said.
	last    map[string]string
	lastErr string
}

func (w *watcher) run(ctx context.Context) error {
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	first := true
	for {
		jobs, err := w.poll(ctx)
		if ctx.Err() != nil {
			// Ctrl-C or --for is how a watch ends: not a failure.
			return nil
		}
		if first && w.id != "" && client.IsStatus(err, 404) {
			return notFoundHint(err, w.id)
		}
		first = false
		if err := w.render(jobs, err); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (w *watcher) poll(ctx context.Context) ([]client.Job, error) {
	if w.id == "" {
		return fetchAll(ctx, w.c)
	}
	j, _, err := w.c.Get(ctx, w.id)
	if err != nil {
		return nil, err
	}
	return []client.Job{j}, nil
}

func (w *watcher) render(jobs []client.Job, err error) error {
	tty, width := w.a.env.Terminal()
	switch {
	case w.a.output == "json":
		return w.plain(jobs, err, true)
	case tty:
		return w.frame(jobs, err, width)
	}
	return w.plain(jobs, err, false)
}

// frame redraws the view in place: back up over the last frame, write
// each line over the old one, clear what is left.
func (w *watcher) frame(jobs []client.Job, pollErr error, width int) error {
	now := w.a.env.Now()
	what := "every job"
	if w.id != "" {
		what = "job " + w.id
	}
	lines := []string{
		fmt.Sprintf("weirctl watch: %s at %s, every %s; Ctrl-C to stop    %s", what, w.c.BaseURL(), w.interval, now.Format("15:04:05")),
		"",
	}
	if len(jobs) > 0 {
		lines = append(lines, w.table(jobs).lines(width)...)
	} else if pollErr == nil {
		lines = append(lines, "no jobs yet: create one with weirctl create -f FILE")
	}
	if pollErr != nil {
		lines = append(lines, "", "! "+strings.ReplaceAll(pollErr.Error(), "\n", " ")+" (retrying)")
	}
	var b strings.Builder
	if w.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\r", w.drawn)
	}
	for _, l := range lines {
		if width > 0 {
			l = cut(l, width)
		}
		b.WriteString(l + "\x1b[K\n")
	}
	b.WriteString("\x1b[J")
	w.drawn = len(lines)
	_, err := io.WriteString(w.a.env.Stdout, b.String())
	return err
}

func (w *watcher) table(jobs []client.Job) *table {
	return jobsTable(jobs, w.a.env.Now())
}

func terminal(state string) bool {
	return state == "Stopped" || state == "Finished" || state == "Failed"
}

// plain prints a line per job whose state changed, for logs and scripts.
func (w *watcher) plain(jobs []client.Job, pollErr error, asJSON bool) error {
	now := w.a.env.Now()
	out := w.a.env.Stdout
	stamp := now.UTC().Format(time.RFC3339)
	if pollErr != nil {
		msg := strings.ReplaceAll(pollErr.Error(), "\n", " ")
		if msg != w.lastErr {
			w.lastErr = msg
			if asJSON {
				return writeLine(out, map[string]string{"time": stamp, "error": msg})
			}
			_, err := fmt.Fprintf(out, "%s error: %s (retrying)\n", stamp, msg)
			return err
		}
		return nil
	}
	if w.lastErr != "" {
		w.lastErr = ""
		if !asJSON {
			if _, err := fmt.Fprintf(out, "%s the API answers again\n", stamp); err != nil {
				return err
			}
		}
	}
	seen := map[string]bool{}
	for _, j := range jobs {
		v := viewOf(j, now)
		seen[v.ID] = true
		// Ages and rates change on every read: a line is printed when what
		// they describe changes (a new summary), not as time passes.
		key := fmt.Sprint(v.State, v.RunID, v.Restarts, v.LastReadyEpoch, v.Stop, errorText(v.LastError, time.Time{}), v.HealthTakenAt)
		if w.last[v.ID] == key {
			continue
		}
		w.last[v.ID] = key
		var err error
		if asJSON {
			err = writeLine(out, v)
		} else {
			lastErr := errorText(v.LastError, now)
			if lastErr != "-" {
				lastErr = fmt.Sprintf("%q", lastErr)
			}
			_, err = fmt.Fprintf(out, "%s %s state=%s for=%s run=%d restarts=%d last_ready_epoch=%d epoch_age=%s heartbeat_age=%s records_per_s=%s stop=%s last_error=%s\n",
				stamp, v.ID, v.State, since(now, v.TransitionedAt), v.RunID, v.Restarts, v.LastReadyEpoch,
				since(now, v.LastReadyAt), since(now, v.LastHeartbeatAt), rateText(v.RecordsInPerSec, v.RecordsOutPerSec), v.Stop, lastErr)
		}
		if err != nil {
			return err
		}
	}
	var gone []string
	for id := range w.last {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	sort.Strings(gone)
	for _, id := range gone {
		delete(w.last, id)
		if asJSON {
			if err := writeLine(out, map[string]any{"id": id, "deleted": true}); err != nil {
				return err
			}
			continue
		}
		if _, err := fmt.Fprintf(out, "%s %s deleted\n", stamp, id); err != nil {
			return err
		}
	}
	return nil
}

func writeLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

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

func (a *app) createCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "create -f FILE",
		Short: "Create a job from a YAML (or JSON) job file",
		Long: `Create a job from a job file: the fields of POST /jobs in YAML, checked
before anything is sent. "-f -" reads the file from standard input.
See cmd/weirctl/examples/demo-job.yaml.`,
		Example: "  weirctl create -f cmd/weirctl/examples/demo-job.yaml",
		Args:    exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usagef("create needs a job file: -f FILE (or -f - for standard input)")
			}
			in, err := readJobFile(file, a.env.Stdin)
			if err != nil {
				return &usageError{err: err}
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			j, err := c.Create(cmd.Context(), in)
			if err != nil {
				if client.IsStatus(err, 409) {
					return fmt.Errorf("%w\n(weirctl get %s shows it; weirctl delete %s removes it once it is stopped)", err, in.ID, in.ID)
				}
				return err
			}
			if a.output == "json" {
				return a.writeJSON(viewOf(j, a.env.Now()))
			}
			_, err = fmt.Fprintf(a.env.Stdout, "job %s created (version %d); follow it with: weirctl watch %s\n", j.ID, j.Version, j.ID)
			return err
		}),
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the job file (YAML or JSON; - for standard input)")
	return cmd
}

func (a *app) listCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List jobs with their state and last ready epoch",
		Long: `List every job with its state, run, restarts, last ready checkpoint,
heartbeat age, record rates and last error. It makes one request per page of
100 jobs: the list carries each job's status.`,
		Aliases: []string{"ls"},
		Args:    exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			jobs, err := fetchAll(cmd.Context(), c)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.writeJSON(listOf(jobs, a.env.Now()))
			}
			if len(jobs) == 0 {
				_, err := fmt.Fprintln(a.env.Stdout, "no jobs: create one with weirctl create -f FILE")
				return err
			}
			t := a.jobsTable(jobs)
			_, width := a.env.Terminal()
			return t.write(a.env.Stdout, width)
		}),
	}
}

// fetchAll reads every job with its status, one request per page of the
// list (the list carries each job's status and health summary, not its
// checkpoints).
func fetchAll(ctx context.Context, c *client.Client) ([]client.Job, error) {
	jobs, err := c.ListAll(ctx)
	if err != nil {
		return nil, err
	}
	sort.Slice(jobs, func(i, k int) bool { return jobs[i].ID < jobs[k].ID })
	return jobs, nil
}

func listOf(jobs []client.Job, now time.Time) listView {
	out := listView{Jobs: []jobView{}}
	for _, j := range jobs {
		out.Jobs = append(out.Jobs, viewOf(j, now))
	}
	return out
}

func (a *app) jobsTable(jobs []client.Job) *table {
	return jobsTable(jobs, a.env.Now())
}

// jobsTable is the table of list and watch: per job, its state (and a
// pending stop), time in it, run, restarts, last ready epoch and its age,
// heartbeat age, records per second in and out, last error. Ages are
// computed at now, from the times the status carries.
func jobsTable(jobs []client.Job, now time.Time) *table {
	t := &table{
		header: []string{"ID", "STATE", "FOR", "RUN", "RESTARTS", "EPOCH", "EPOCH AGE", "HB AGE", "REC/S", "LAST ERROR"},
		shrink: []bool{true, true, false, false, false, false, false, false, false, true},
	}
	for _, j := range jobs {
		v := viewOf(j, now)
		state := v.State
		if s := stopText(v.Stop); s != "" && !terminal(v.State) {
			state += " (stop: " + s + ")"
		}
		run, restarts := runText(v)
		t.add(v.ID, state, since(now, v.TransitionedAt), run, restarts,
			epochText(v.LastReadyEpoch), since(now, v.LastReadyAt), since(now, v.LastHeartbeatAt),
			rateText(v.RecordsInPerSec, v.RecordsOutPerSec), errorText(v.LastError, now))
	}
	return t
}

func stopText(mode string) string {
	if mode == "none" {
		return ""
	}
	return mode
}

func (a *app) getCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "get ID",
		Short:   "Show a job: config, status, recent checkpoints, last error",
		Example: "  weirctl get demo\n  weirctl get demo -o json | jq .last_ready_epoch",
		Args:    exactArgs("ID"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			j, _, err := c.Get(cmd.Context(), args[0])
			if err != nil {
				return notFoundHint(err, args[0])
			}
			if a.output == "json" {
				return a.writeJSON(viewOf(j, a.env.Now()))
			}
			return a.writeDetail(j)
		}),
	}
}

// notFoundHint adds what to do to a 404.
func notFoundHint(err error, id string) error {
	if client.IsStatus(err, 404) {
		return fmt.Errorf("%w\n(weirctl list shows the jobs there are)", err)
	}
	return err
}

func (a *app) deleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a job at rest (stopped, finished, failed, or never started)",
		Long: `Delete a job that is at rest. A running job must be stopped first:
weirctl stop ID, then weirctl watch ID until it is Stopped.`,
		Args: exactArgs("ID"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			ctx, id := cmd.Context(), args[0]
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			before, etag, err := c.Get(ctx, id)
			if err != nil {
				return notFoundHint(err, id)
			}
			if err := c.Delete(ctx, id, etag); err != nil {
				switch {
				case client.IsStatus(err, 412):
					return a.stale(ctx, c, before, err)
				case client.IsStatus(err, 409):
					return fmt.Errorf("%w\n(stop it with weirctl stop %s, wait until weirctl get %s says Stopped, then delete it)", err, id, id)
				}
				return err
			}
			if a.output == "json" {
				return a.writeJSON(map[string]any{"id": id, "deleted": true})
			}
			_, err = fmt.Fprintf(a.env.Stdout, "job %s deleted\n", id)
			return err
		}),
	}
}

func (a *app) writeJSON(v any) error {
	enc := json.NewEncoder(a.env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeDetail prints one job for people.
func (a *app) writeDetail(j client.Job) error {
	now := a.env.Now()
	v := viewOf(j, now)
	cfg := j.Config
	var b strings.Builder
	row := func(k, v string) { fmt.Fprintf(&b, "%-15s %s\n", k, v) }
	row("ID", v.ID)
	row("Version", fmt.Sprint(v.Version))
	state := v.State
	if v.TransitionedAt != nil {
		state += " for " + since(now, v.TransitionedAt)
	}
	row("State", state)
	if v.Status != nil {
		row("Run", fmt.Sprint(v.RunID))
		allowed := "unlimited"
		if n := cfg.RestartPolicy.AllowedRestarts; n >= 0 {
			allowed = fmt.Sprint(n)
		}
		row("Restarts", fmt.Sprintf("%d (allowed %s, reset after %s healthy)", v.Restarts, allowed, orDash(cfg.RestartPolicy.HealthyDuration)))
	}
	ready := "-"
	if v.LastReadyEpoch > 0 {
		ready = fmt.Sprintf("epoch %d", v.LastReadyEpoch)
		if v.LastReadyAt != nil {
			ready += ", " + since(now, v.LastReadyAt) + " ago"
		}
	}
	row("Last ready", ready)
	if v.LastHeartbeatAt != nil {
		row("Heartbeat", since(now, v.LastHeartbeatAt)+" ago (the least recently heard worker)")
	} else if v.Status != nil {
		row("Heartbeat", "- (no worker of this run heard yet)")
	}
	if v.RecordsInPerSec != nil {
		row("Records/s", rateText(v.RecordsInPerSec, v.RecordsOutPerSec)+" (in/out)")
	}
	if v.HealthTakenAt != nil {
		row("Health as of", since(now, v.HealthTakenAt)+" ago")
	}
	row("Last error", errorText(v.LastError, now))
	stop := cfg.Stop
	if cfg.StopReason != "" {
		stop += " (" + cfg.StopReason + ")"
	}
	row("Stop", stop)
	row("Checkpoints", "every "+cfg.CheckpointInterval)
	row("TTL", orDash(cfg.TTL))
	row("Program", cfg.Spec.Program)
	row("Operators", operatorsText(cfg))
	row("Updated", cfg.UpdatedAt.Local().Format("2006-01-02 15:04:05 MST"))
	if _, err := io.WriteString(a.env.Stdout, b.String()); err != nil {
		return err
	}
	if len(j.Checkpoints) == 0 {
		return nil
	}
	t := &table{header: []string{"EPOCH", "STATE", "STARTED", "TOOK", "FAILURE"}, shrink: []bool{false, false, false, false, true}}
	for i := len(j.Checkpoints) - 1; i >= 0; i-- {
		cp := j.Checkpoints[i]
		took := "-"
		if !cp.FinishedAt.IsZero() && !cp.StartedAt.IsZero() {
			took = shortDuration(cp.FinishedAt.Sub(cp.StartedAt))
		}
		started := "-"
		if !cp.StartedAt.IsZero() {
			started = since(now, &cp.StartedAt) + " ago"
		}
		t.add(fmt.Sprint(cp.Epoch), cp.State, started, took, orDash(cp.Failure))
	}
	fmt.Fprintln(a.env.Stdout)
	_, width := a.env.Terminal()
	return t.write(a.env.Stdout, width)
}

// operatorsText lists the operators with their effective parallelism.
func operatorsText(cfg client.Config) string {
	var parts []string
	for _, op := range cfg.Spec.Operators {
		p := op.Parallelism
		if n, ok := cfg.Parallelism[op.ID]; ok {
			p = n
		}
		s := fmt.Sprintf("%s=%d", op.ID, p)
		var marks []string
		if op.Source {
			marks = append(marks, "source")
		}
		if op.Committing {
			marks = append(marks, "committing")
		}
		if len(marks) > 0 {
			s += " (" + strings.Join(marks, ", ") + ")"
		}
		parts = append(parts, s)
	}
	return fmt.Sprintf("%s; %d slots per worker", strings.Join(parts, ", "), cfg.Spec.SlotsPerWorker)
}

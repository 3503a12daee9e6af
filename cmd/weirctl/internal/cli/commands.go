package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

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
				return a.writeJSON(viewOf(j))
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
		Long: `List every job with its state, run, restarts and last ready checkpoint.
It reads each job's status with one request per job.`,
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
				return a.writeJSON(listOf(jobs))
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

// fetchAll lists the jobs and reads each one's status and checkpoints,
// which the list does not carry, a few at a time. A job deleted meanwhile
// is left out.
func fetchAll(ctx context.Context, c *client.Client) ([]client.Job, error) {
	list, err := c.ListAll(ctx)
	if err != nil {
		return nil, err
	}
	const parallel = 8
	out := make([]client.Job, len(list))
	errs := make([]error, len(list))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, j := range list {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			full, _, err := c.Get(ctx, j.ID)
			switch {
			case client.IsStatus(err, 404):
				return
			case err != nil:
				errs[i] = err
				return
			}
			out[i] = full
		}()
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		return nil, err
	}
	kept := out[:0]
	for _, j := range out {
		if j.ID != "" {
			kept = append(kept, j)
		}
	}
	sort.Slice(kept, func(i, k int) bool { return kept[i].ID < kept[k].ID })
	return kept, nil
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func listOf(jobs []client.Job) listView {
	out := listView{Jobs: []jobView{}}
	for _, j := range jobs {
		out.Jobs = append(out.Jobs, viewOf(j))
	}
	return out
}

func (a *app) jobsTable(jobs []client.Job) *table {
	now := a.env.Now()
	t := &table{
		header: []string{"ID", "STATE", "FOR", "RUN", "RESTARTS", "EPOCH", "EPOCH AGE", "STOP", "LAST ERROR"},
		shrink: []bool{true, false, false, false, false, false, false, false, true},
	}
	for _, j := range jobs {
		v := viewOf(j)
		run, restarts := runText(v)
		t.add(v.ID, v.State, since(now, v.TransitionedAt), run, restarts,
			epochText(v.LastReadyEpoch), since(now, v.LastReadyAt), orDash(stopText(v.Stop)), errorText(v.LastError))
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
				return a.writeJSON(viewOf(j))
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
	v := viewOf(j)
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
		row("Heartbeat", since(now, v.LastHeartbeatAt)+" ago")
	}
	if v.RecordsPerSecond != nil {
		row("Records/s", rateText(v.RecordsPerSecond))
	}
	row("Last error", errorText(v.LastError))
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

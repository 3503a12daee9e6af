package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/cmd/weirctl/internal/client"
	"github.com/weirstream/weir/core/job"
)

// errNothing is what a change returns when the job already is as asked.
type errNothing struct{ why string }

func (e errNothing) Error() string { return e.why }

// change reads a job, builds a patch from what it read, and sends it with
// If-Match naming the version read. A 412 becomes a staleError that shows
// what the other writer changed.
func (a *app) change(ctx context.Context, id string, build func(client.Job) (client.Patch, error)) (before, after client.Job, err error) {
	c, err := a.client(ctx)
	if err != nil {
		return client.Job{}, client.Job{}, err
	}
	before, etag, err := c.Get(ctx, id)
	if err != nil {
		return client.Job{}, client.Job{}, notFoundHint(err, id)
	}
	p, err := build(before)
	if err != nil {
		return before, client.Job{}, err
	}
	after, err = c.Patch(ctx, id, etag, p)
	if client.IsStatus(err, 412) {
		return before, client.Job{}, a.stale(ctx, c, before, err)
	}
	return before, after, err
}

// report prints the outcome of a change.
func (a *app) report(before, after client.Job, what string) error {
	if a.output == "json" {
		return a.writeJSON(viewOf(after, a.env.Now()))
	}
	v := viewOf(after, a.env.Now())
	_, err := fmt.Fprintf(a.env.Stdout, "job %s: %s (version %d → %d); it is %s now: weirctl watch %s follows it\n",
		after.ID, what, before.Version, after.Version, v.State, after.ID)
	return err
}

// nothing prints that no change was needed.
func (a *app) nothing(j client.Job, why string) error {
	if a.output == "json" {
		return a.writeJSON(viewOf(j, a.env.Now()))
	}
	_, err := fmt.Fprintf(a.env.Stdout, "job %s: nothing to change: %s\n", j.ID, why)
	return err
}

func (a *app) runChange(ctx context.Context, id, what string, build func(client.Job) (client.Patch, error)) error {
	before, after, err := a.change(ctx, id, build)
	var n errNothing
	if errors.As(err, &n) {
		return a.nothing(before, n.why)
	}
	if err != nil {
		return err
	}
	return a.report(before, after, what)
}

var stopModes = []string{"checkpoint", "graceful", "immediate", "force"}

func (a *app) stopCommand() *cobra.Command {
	var mode string
	cmd := &cobra.Command{
		Use:   "stop ID [--mode checkpoint|graceful|immediate|force]",
		Short: "Stop a job",
		Long: `Stop a job. Modes:
  checkpoint  take a final checkpoint, then stop (default)
  graceful    ask the workers to drain and stop
  immediate   ask the workers to stop now
  force       tear the workers down without asking; accepted in every state`,
		Args: exactArgs("ID"),
		PreRunE: func(*cobra.Command, []string) error {
			for _, m := range stopModes {
				if mode == m {
					return nil
				}
			}
			return usagef("--mode %q is not a stop mode: use %s", mode, strings.Join(stopModes, ", "))
		},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			return a.runChange(cmd.Context(), args[0], "stop ("+mode+") requested", func(j client.Job) (client.Patch, error) {
				if j.Config.Stop == mode {
					return client.Patch{}, errNothing{"a " + mode + " stop is requested already"}
				}
				return client.Patch{Stop: &mode}, nil
			})
		}),
	}
	cmd.Flags().StringVar(&mode, "mode", "checkpoint", "how to stop: "+strings.Join(stopModes, ", "))
	return cmd
}

func (a *app) restartCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "restart ID [--force]",
		Short: "Restart a job; a stopped job runs again",
		Long: `Restart a job with a new run of workers. By default the restart is safe:
a final checkpoint first, and the new run restores from it. --force tears the
workers down at once and restores from the last ready checkpoint.
A job that was stopped has its stop request cleared, so it runs again.`,
		Args: exactArgs("ID"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			mode := "safe"
			if force {
				mode = "force"
			}
			return a.runChange(cmd.Context(), args[0], "restart ("+mode+") requested", func(j client.Job) (client.Patch, error) {
				p := client.Patch{Restart: &mode}
				if j.Config.Stop != "" && j.Config.Stop != "none" {
					none := "none"
					p.Stop = &none
				}
				return p, nil
			})
		}),
	}
	cmd.Flags().BoolVar(&force, "force", false, "tear the workers down at once instead of a final checkpoint first")
	return cmd
}

func (a *app) scaleCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "scale ID OPERATOR=N...",
		Short: "Change the parallelism of operators",
		Long: `Change the parallelism of one or more operators. The job takes a final
checkpoint and is rescheduled with the new layout.`,
		Example: "  weirctl scale demo map=4 sink=2",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usagef("scale needs a job ID and at least one OPERATOR=N, e.g. weirctl scale demo map=4")
			}
			_, err := parseScale(args[1:])
			return err
		},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			want, _ := parseScale(args[1:])
			return a.runChange(cmd.Context(), args[0], "rescale to "+scaleText(want)+" requested", func(j client.Job) (client.Patch, error) {
				ops := map[string]int{}
				var names []string
				for _, op := range j.Config.Spec.Operators {
					ops[op.ID] = op.Parallelism
					names = append(names, op.ID)
				}
				for op := range j.Config.Parallelism {
					ops[op] = j.Config.Parallelism[op]
				}
				changed := false
				for op, n := range want {
					cur, ok := ops[op]
					if !ok {
						return client.Patch{}, usagef("job %s has no operator %q: its operators are %s", j.ID, op, strings.Join(names, ", "))
					}
					changed = changed || cur != n
				}
				if !changed {
					return client.Patch{}, errNothing{"the operators already have that parallelism"}
				}
				return client.Patch{Parallelism: want}, nil
			})
		}),
	}
}

// parseScale reads OPERATOR=N arguments.
func parseScale(args []string) (map[string]int, error) {
	out := map[string]int{}
	for _, arg := range args {
		op, n, ok := strings.Cut(arg, "=")
		if !ok || op == "" {
			return nil, usagef("%q is not OPERATOR=N: write it like map=4", arg)
		}
		p, err := strconv.Atoi(n)
		if err != nil || p < 1 || p > job.MaxParallelism {
			return nil, usagef("%q: the parallelism must be a whole number from 1 to %d", arg, job.MaxParallelism)
		}
		if _, dup := out[op]; dup {
			return nil, usagef("operator %s is named twice: name each operator once", op)
		}
		out[op] = p
	}
	return out, nil
}

func scaleText(p map[string]int) string {
	var parts []string
	for op, n := range p {
		parts = append(parts, fmt.Sprintf("%s=%d", op, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func (a *app) setCommand() *cobra.Command {
	var interval, ttl, healthy string
	var allowed int
	cmd := &cobra.Command{
		Use:   "set ID [--checkpoint-interval D] [--ttl D|none] [--allowed-restarts N] [--healthy-duration D]",
		Short: "Change a job's checkpoint interval, TTL or restart policy",
		Long: `Change settings that apply to a running job without a restart. Durations
are written like 10s, 5m or 1h30m. --ttl none removes the TTL; --allowed-restarts -1
means unlimited.`,
		Example: "  weirctl set demo --checkpoint-interval 30s --ttl 2h",
		Args:    exactArgs("ID"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			var p client.Patch
			var what []string
			if fl.Changed("checkpoint-interval") {
				d, err := parseDuration("--checkpoint-interval", interval, job.MinCheckpointInterval, maxCheckpointInterval)
				if err != nil {
					return &usageError{err: err}
				}
				s := d.String()
				p.CheckpointInterval = &s
				what = append(what, "checkpoint interval "+shortDuration(d))
			}
			if fl.Changed("ttl") {
				if ttl == "none" || ttl == "0" {
					p.ClearTTL = true
					what = append(what, "no TTL")
				} else {
					d, err := parseDuration("--ttl", ttl, 0, maxTTL)
					if err != nil {
						return &usageError{err: fmt.Errorf("%w, or none to remove it", err)}
					}
					if d == 0 {
						p.ClearTTL = true
						what = append(what, "no TTL")
					} else {
						s := d.String()
						p.TTL = &s
						what = append(what, "TTL "+shortDuration(d))
					}
				}
			}
			if fl.Changed("allowed-restarts") || fl.Changed("healthy-duration") {
				p.RestartPolicy = &client.PolicyChange{}
			}
			if fl.Changed("allowed-restarts") {
				if allowed < -1 || allowed > maxAllowedRestarts {
					return usagef("--allowed-restarts %d: use -1 for unlimited or 0 to %d", allowed, maxAllowedRestarts)
				}
				p.RestartPolicy.AllowedRestarts = &allowed
				what = append(what, fmt.Sprintf("allowed restarts %d", allowed))
			}
			if fl.Changed("healthy-duration") {
				d, err := parseDuration("--healthy-duration", healthy, 0, maxHealthyDuration)
				if err != nil {
					return &usageError{err: err}
				}
				s := d.String()
				p.RestartPolicy.HealthyDuration = &s
				what = append(what, "healthy duration "+shortDuration(d))
			}
			if len(what) == 0 {
				return usagef("set needs at least one of --checkpoint-interval, --ttl, --allowed-restarts, --healthy-duration")
			}
			return a.runChange(cmd.Context(), args[0], strings.Join(what, ", ")+" set", func(client.Job) (client.Patch, error) {
				return p, nil
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&interval, "checkpoint-interval", "", "time between checkpoints, e.g. 10s (1s to 24h)")
	f.StringVar(&ttl, "ttl", "", "stop the job this long after it first started, e.g. 2h; none removes it")
	f.IntVar(&allowed, "allowed-restarts", 0, "restarts allowed before the job fails; -1 is unlimited")
	f.StringVar(&healthy, "healthy-duration", "", "how long a job must run without trouble before its restart count resets, e.g. 2m")
	return cmd
}

// staleError is a change refused because someone else changed the job
// after weirctl read it.
type staleError struct {
	before client.Job
	after  *client.Job // nil when the job could not be read again
	cause  error
}

func (e *staleError) Unwrap() error { return e.cause }

func (e *staleError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "job %s was changed by someone else after weirctl read it at version %d; nothing was changed.\n", e.before.ID, e.before.Version)
	if e.after == nil {
		fmt.Fprintf(&b, "It could not be read again to show what changed (%v).\n", e.cause)
	} else {
		changes := configChanges(e.before, *e.after)
		fmt.Fprintf(&b, "It is now at version %d, changed %s:\n", e.after.Version, e.after.Config.UpdatedAt.Local().Format("2006-01-02 15:04:05 MST"))
		if len(changes) == 0 {
			b.WriteString("  (no field weirctl shows differs)\n")
		}
		for _, c := range changes {
			b.WriteString("  " + c + "\n")
		}
	}
	b.WriteString("Check the job with weirctl get " + e.before.ID + ", then run the command again if it still makes sense.")
	return b.String()
}

// stale reads the job again to build a staleError.
func (a *app) stale(ctx context.Context, c *client.Client, before client.Job, cause error) error {
	after, _, err := c.Get(ctx, before.ID)
	if err != nil {
		return &staleError{before: before, cause: fmt.Errorf("%w; reading it again: %w", cause, err)}
	}
	return &staleError{before: before, after: &after, cause: cause}
}

// configChanges lists what differs between two reads of a job's config.
func configChanges(before, after client.Job) []string {
	b, a := before.Config, after.Config
	var out []string
	diff := func(name, x, y string) {
		if x != y {
			out = append(out, fmt.Sprintf("%s: %s → %s", name, orDash(x), orDash(y)))
		}
	}
	diff("stop", b.Stop, a.Stop)
	if a.StopReason != b.StopReason && a.StopReason != "" {
		out = append(out, "stop reason: "+a.StopReason)
	}
	if a.RestartNonce != b.RestartNonce {
		out = append(out, fmt.Sprintf("restart requested (%s)", orDash(a.RestartMode)))
	}
	ops := map[string]bool{}
	for op := range b.Parallelism {
		ops[op] = true
	}
	for op := range a.Parallelism {
		ops[op] = true
	}
	var names []string
	for op := range ops {
		names = append(names, op)
	}
	sort.Strings(names)
	for _, op := range names {
		x, okx := b.Parallelism[op]
		y, oky := a.Parallelism[op]
		if x != y || okx != oky {
			diff("parallelism of "+op, intOrEmpty(x, okx), intOrEmpty(y, oky))
		}
	}
	diff("checkpoint interval", b.CheckpointInterval, a.CheckpointInterval)
	diff("ttl", b.TTL, a.TTL)
	diff("allowed restarts", strconv.Itoa(b.RestartPolicy.AllowedRestarts), strconv.Itoa(a.RestartPolicy.AllowedRestarts))
	diff("healthy duration", b.RestartPolicy.HealthyDuration, a.RestartPolicy.HealthyDuration)
	if before.Status != nil && after.Status != nil && before.Status.State != after.Status.State {
		out = append(out, fmt.Sprintf("(state meanwhile: %s → %s)", before.Status.State, after.Status.State))
	}
	return out
}

func intOrEmpty(n int, ok bool) string {
	if !ok {
		return ""
	}
	return strconv.Itoa(n)
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/spf13/cobra"

	"github.com/weirstream/weir/infra/resources"
)

// stackFlags are the flags every subcommand shares.
type stackFlags struct {
	template string
	stack    string
	params   []string
	timeout  time.Duration
}

func (f *stackFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.template, "template", "template.yaml", "path of the SAM template that declares the data resources")
	fl.StringVar(&f.stack, "stack", "", "stack name; it prefixes every resource name (required)")
	fl.StringArrayVar(&f.params, "param", nil, "template parameter override NAME=VALUE (repeatable)")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Minute, "give up after this long")
	_ = cmd.MarkFlagRequired("stack")
}

// prepare checks the flags and loads the template, before any AWS call.
func (f *stackFlags) prepare() (*resources.Template, resources.Options, error) {
	params := map[string]string{}
	for _, p := range f.params {
		name, value, ok := strings.Cut(p, "=")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, resources.Options{}, fmt.Errorf("--param %q: want NAME=VALUE, e.g. --param WorkerMaxReceiveCount=5", p)
		}
		if _, dup := params[name]; dup {
			return nil, resources.Options{}, fmt.Errorf("--param %s is given twice", name)
		}
		params[name] = value
	}
	if f.timeout <= 0 {
		return nil, resources.Options{}, fmt.Errorf("--timeout %v: must be positive", f.timeout)
	}
	tmpl, err := resources.Load(f.template)
	if err != nil {
		return nil, resources.Options{}, fmt.Errorf("--template: %w", err)
	}
	return tmpl, resources.Options{StackName: f.stack, Parameters: params}, nil
}

type configLoader func(context.Context) (aws.Config, error)

func newRootCommand(loadConfig configLoader) *cobra.Command {
	root := &cobra.Command{
		Use:   "weir-resources",
		Short: "Create and delete the data resources that template.yaml declares",
		Long: `weir-resources derives the DynamoDB tables, SQS queues and EventBridge
Scheduler schedule groups from the SAM template and creates them against the
endpoint the AWS SDK is configured for: set AWS_ENDPOINT_URL for the local
emulator or LocalStack, or leave it unset for AWS. Every other resource type
(functions, roles, the API, the ECS service, alarms) is skipped: those need
sam deploy. Creating is idempotent: existing resources are reused after
checking that their keys match the template.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.AddCommand(newCreateCommand(loadConfig), newDeleteCommand(loadConfig))
	return root
}

func newCreateCommand(loadConfig configLoader) *cobra.Command {
	var f stackFlags
	var format string
	cmd := &cobra.Command{
		Use:   "create --stack NAME [--param NAME=VALUE]...",
		Short: "Create the stack's data resources (or reuse them) and print their names",
		Long: `create makes every AWS::DynamoDB::Table, AWS::SQS::Queue and
AWS::Scheduler::ScheduleGroup of the template and prints the environment weir's binaries read, one NAME=value a line
(--format env, ready for eval) or as JSON with every resource's name, URL
and ARN (--format json). Progress goes to standard error.`,
		Example: `  eval "$(weir-resources create --stack weir-local)"
  weir-resources create --stack weir-test --param WorkerMaxReceiveCount=1 --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "env" && format != "json" {
				return fmt.Errorf("--format %q: want env or json", format)
			}
			tmpl, opts, err := f.prepare()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			cfg, err := loadConfig(ctx)
			if err != nil {
				return fmt.Errorf("load AWS config: %w", err)
			}
			stack, err := tmpl.CreateWith(ctx, clientsOf(cfg), opts)
			if err != nil {
				if errors.Is(err, resources.ErrMismatch) {
					return fmt.Errorf("%w\n(to start over: weir-resources delete --template %s --stack %s)", err, f.template, f.stack)
				}
				return err
			}
			for _, r := range stack.Resources {
				verb := "found"
				if r.Created {
					verb = "created"
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%-7s %-20s %-24s %s\n", verb, r.Type, r.LogicalID, r.Name)
			}
			if format == "json" {
				return writeJSON(cmd.OutOrStdout(), stack)
			}
			return writeEnv(cmd.OutOrStdout(), stack.Env())
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&format, "format", "env", "output format: env or json")
	return cmd
}

func newDeleteCommand(loadConfig configLoader) *cobra.Command {
	var f stackFlags
	cmd := &cobra.Command{
		Use:   "delete --stack NAME [--param NAME=VALUE]...",
		Short: "Delete the stack's data resources",
		Long: `delete finds the data resources the template would create under the stack
name and deletes those that exist, waiting until the tables are gone. Pass
the same --param values as to create when they change resource names.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tmpl, opts, err := f.prepare()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			cfg, err := loadConfig(ctx)
			if err != nil {
				return fmt.Errorf("load AWS config: %w", err)
			}
			clients := clientsOf(cfg)
			stack, err := tmpl.Lookup(ctx, clients, opts)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(stack.Resources) == 0 {
				fmt.Fprintf(out, "stack %s has no data resources to delete\n", f.stack)
				return nil
			}
			if err := stack.DeleteWith(ctx, clients); err != nil {
				return err
			}
			for _, r := range stack.Resources {
				fmt.Fprintf(out, "deleted %-20s %-24s %s\n", r.Type, r.LogicalID, r.Name)
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func clientsOf(cfg aws.Config) resources.Clients {
	return resources.Clients{
		DynamoDB:  dynamodb.NewFromConfig(cfg),
		SQS:       sqs.NewFromConfig(cfg),
		Scheduler: scheduler.NewFromConfig(cfg),
	}
}

// Values made of these characters need no quoting in a POSIX shell.
var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_./:@%+=,-]*$`)

func writeEnv(w io.Writer, env map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(env)) {
		v := env[k]
		if !shellSafe.MatchString(v) {
			v = "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
		}
		if _, err := fmt.Fprintf(w, "%s=%s\n", k, v); err != nil {
			return err
		}
	}
	return nil
}

type jsonResource struct {
	LogicalID string `json:"logicalId"`
	Type      string `json:"type"`
	Name      string `json:"name"`
	URL       string `json:"url,omitempty"`
	ARN       string `json:"arn"`
	StreamARN string `json:"streamArn,omitempty"`
	Created   bool   `json:"created"`
}

func writeJSON(w io.Writer, stack *resources.Stack) error {
	out := struct {
		Stack     string            `json:"stack"`
		Env       map[string]string `json:"env"`
		Resources []jsonResource    `json:"resources"`
	}{Stack: stack.Name, Env: stack.Env()}
	for _, r := range stack.Resources {
		out.Resources = append(out.Resources, jsonResource(r))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// Package cli is weirctl's command line: the commands, their output and
// their exit codes. main wires it to the process; tests run it in place.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/spf13/cobra"

	"github.com/weirstream/weir/cmd/weirctl/internal/client"
)

// EnvAPIURL names the variable that gives the API's URL when --api is not
// passed.
const EnvAPIURL = "WEIR_API_URL"

// Env is what the commands use of the outside world.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Terminal reports whether standard output is a terminal and, if so,
	// its width in columns. Default: never a terminal.
	Terminal func() (isTTY bool, width int)
	// Now defaults to time.Now.
	Now func() time.Time
	// HTTP sends the requests. Default: a fresh client per command.
	HTTP *http.Client
	// AWS loads the credentials and region that sign requests to AWS
	// endpoints; called only when a request is to be signed.
	AWS func(ctx context.Context) (aws.CredentialsProvider, string, error)
}

// app is one run of weirctl: its flags and its environment.
type app struct {
	env     Env
	api     string
	output  string
	timeout time.Duration
	sign    string
	// ran is set once a command's own code starts: errors before that are
	// cobra's refusals of the command line.
	ran bool
}

// Run runs weirctl with args (without the program name) and returns the
// exit code.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Terminal == nil {
		env.Terminal = func() (bool, int) { return false, 0 }
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	a := &app{env: env}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	if !a.ran {
		var u *usageError
		if !errors.As(err, &u) {
			err = &usageError{err: err}
		}
	}
	code := exitCode(err)
	fmt.Fprintf(env.Stderr, "weirctl: %s\n", strings.TrimRight(err.Error(), "\n"))
	var network *client.NetworkError
	if errors.As(err, &network) && code == ExitUnavailable {
		fmt.Fprintf(env.Stderr, "Is the API at %s up? Check --api or $%s; make run starts one locally and prints its URL.\n", a.apiURL(), EnvAPIURL)
	}
	if code == ExitUsage && !a.ran && cmd != nil {
		fmt.Fprintf(env.Stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

const rootLong = `weirctl drives weir's streaming jobs through its config API.

It talks to the API at --api or $WEIR_API_URL: plain HTTP to a local server
(make run prints its URL), SigV4-signed HTTPS to API Gateway
(https://ID.execute-api.REGION.amazonaws.com) with the AWS SDK's default
credentials.

Exit codes:
  0  done
  1  failed otherwise (an answer that is not the API's)
  2  bad command line, job file or set-up (API URL, credentials): nothing was sent
  3  the API refused the request: no such job, a job that exists, a value it rejects
  4  someone else changed the job since weirctl read it: nothing was changed
  5  the API could not be reached or failed (5xx): look, then try again
130  interrupted`

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "weirctl",
		Short:         "Create, watch and change weir's streaming jobs",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		// A bare "weirctl" shows help and is a usage error, so scripts that
		// lost their arguments do not pass silently.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_ = cmd.Help()
			return usagef("no command given")
		},
		PersistentPreRunE: func(*cobra.Command, []string) error {
			switch a.output {
			case "table", "json":
			default:
				return usagef("--output %q is not a format: use table or json", a.output)
			}
			switch a.sign {
			case "auto", "always", "never":
			default:
				return usagef("--sign %q is not a choice: use auto, always or never", a.sign)
			}
			if a.timeout <= 0 {
				return usagef("--timeout %s must be positive, e.g. 30s", a.timeout)
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{err: err}
	})
	f := root.PersistentFlags()
	f.StringVar(&a.api, "api", "", "the config API's URL (default $"+EnvAPIURL+")")
	f.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&a.timeout, "timeout", 30*time.Second, "how long to wait for each answer of the API")
	f.StringVar(&a.sign, "sign", "auto", "SigV4-sign requests: auto (AWS endpoints only), always or never")
	root.AddCommand(
		a.createCommand(), a.listCommand(), a.getCommand(), a.stopCommand(),
		a.restartCommand(), a.scaleCommand(), a.setCommand(), a.deleteCommand(),
		a.watchCommand(),
	)
	root.CompletionOptions.DisableDefaultCmd = true
	return root
}

// run marks the command as started; cobra has accepted its command line.
func (a *app) run(f func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a.ran = true
		return f(cmd, args)
	}
}

// apiURL is the API's URL from --api or the environment.
func (a *app) apiURL() string {
	if a.api != "" {
		return a.api
	}
	return a.env.Getenv(EnvAPIURL)
}

// client builds the API client from the flags and the environment.
func (a *app) client(ctx context.Context) (*client.Client, error) {
	raw := a.apiURL()
	if _, err := client.ParseBaseURL(raw); err != nil {
		return nil, &usageError{err: err}
	}
	o := client.Options{BaseURL: raw, HTTP: a.env.HTTP, UserAgent: "weirctl"}
	if o.HTTP == nil {
		o.HTTP = &http.Client{}
	}
	hc := *o.HTTP
	hc.Timeout = a.timeout
	o.HTTP = &hc
	switch a.sign {
	case "always":
		o.Signing = client.SignAlways
	case "never":
		o.Signing = client.SignNever
	}
	_, isAWS := client.IsAWSEndpoint(raw)
	if o.Signing == client.SignAlways || (o.Signing == client.SignAuto && isAWS) {
		if a.env.AWS == nil {
			return nil, &usageError{err: errors.New("requests to this API must be signed, but this build of weirctl cannot load AWS credentials")}
		}
		creds, region, err := a.env.AWS(ctx)
		if err != nil {
			return nil, &client.CredentialsError{Err: err}
		}
		o.Credentials = creds
		if !isAWS {
			o.Region = region
		}
	}
	c, err := client.New(o)
	if err != nil {
		return nil, &usageError{err: err}
	}
	return c, nil
}

// exactArgs is cobra.ExactArgs with an error that names what is missing.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == len(names) {
			return nil
		}
		if len(args) < len(names) {
			return usagef("%s needs %s", cmd.Name(), strings.Join(names[len(args):], " and "))
		}
		return usagef("%s takes %d argument(s) (%s), got %d: %q", cmd.Name(), len(names), strings.Join(names, " "), len(args), args)
	}
}

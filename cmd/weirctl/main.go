// Command weirctl is weir's operator CLI: it creates, lists, watches and
// changes jobs through the config API, locally (make run) or on AWS.
// See docs/operations.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"golang.org/x/term"

	"github.com/weirstream/weir/cmd/weirctl/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Env{
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		Getenv: os.Getenv,
		Terminal: func() (bool, int) {
			fd := int(os.Stdout.Fd())
			if !term.IsTerminal(fd) {
				return false, 0
			}
			w, _, err := term.GetSize(fd)
			if err != nil {
				return true, 0
			}
			return true, w
		},
		AWS: func(ctx context.Context) (aws.CredentialsProvider, string, error) {
			cfg, err := config.LoadDefaultConfig(ctx)
			if err != nil {
				return nil, "", err
			}
			return cfg.Credentials, cfg.Region, nil
		},
	})
	stop()
	os.Exit(code)
}

// Command weir-resources creates and deletes the data resources (DynamoDB
// tables, SQS queues, the TTL schedule group) declared in template.yaml against any endpoint the AWS SDK is
// pointed at (AWS_ENDPOINT_URL for the local emulator or LocalStack), and
// prints the environment weir's binaries read:
//
//	eval "$(weir-resources create --stack weir-local)"
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	loadConfig := func(ctx context.Context) (aws.Config, error) {
		return config.LoadDefaultConfig(ctx)
	}
	if err := newRootCommand(loadConfig).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "weir-resources:", err)
		os.Exit(1)
	}
}

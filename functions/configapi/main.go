// Command configapi is the config API's Lambda function (API Gateway HTTP
// API, payload 2.0): api/openapi.yaml served by httpapi.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/weirstream/weir/functions/configapi/httpapi"
	"github.com/weirstream/weir/functions/wiring"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	svc, _, err := wiring.Service(context.Background(), wiring.EnvFrom(os.Getenv), log)
	if err != nil {
		log.Error("config API cannot start", "err", err)
		os.Exit(1)
	}
	h, err := httpapi.New(svc, log)
	if err != nil {
		log.Error("config API cannot start", "err", err)
		os.Exit(1)
	}
	lambda.Start(httpapi.Lambda(h))
}

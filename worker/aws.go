package worker

import (
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/sqs"
)

var (
	_ Publisher = (*sqs.Publisher)(nil)
	_ Commands  = (*dynamo.Store)(nil)
)

// Connect returns the worker's ports on AWS, with clients made from cfg:
// envelopes go to id's worker queue through infra/sqs, and the command
// record is read from id's jobs table through infra/dynamo (an eventually
// consistent GetItem). Load cfg once in main (config.LoadDefaultConfig)
// and pass it in; it makes no AWS call itself.
func Connect(cfg aws.Config, id Identity, logger *slog.Logger) (Publisher, Commands, error) {
	if err := id.Validate(); err != nil {
		return nil, nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	pub, err := sqs.NewPublisher(awssqs.NewFromConfig(cfg), id.QueueURL, sqs.PublisherOptions{Logger: logger})
	if err != nil {
		return nil, nil, fmt.Errorf("worker: %w", err)
	}
	st, err := dynamo.NewStore(dynamodb.NewFromConfig(cfg), id.JobsTable)
	if err != nil {
		return nil, nil, fmt.Errorf("worker: %w", err)
	}
	return pub, st, nil
}

package worker

import (
	"context"
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

// twoQueues sends routine envelopes to the worker queue and urgent ones to
// the urgent queue.
type twoQueues struct{ routine, urgent *sqs.Publisher }

func (q twoQueues) Publish(ctx context.Context, body []byte) error {
	return q.routine.Publish(ctx, body)
}

func (q twoQueues) PublishUrgent(ctx context.Context, body []byte) error {
	return q.urgent.Publish(ctx, body)
}

// Connect returns the worker's ports on AWS, with clients made from cfg:
// envelopes go to id's worker queue through infra/sqs (those with urgent
// news to its urgent queue, if it has one: the Publisher is then an
// UrgentPublisher), and the command
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
	client := awssqs.NewFromConfig(cfg)
	routine, err := sqs.NewPublisher(client, id.QueueURL, sqs.PublisherOptions{Logger: logger})
	if err != nil {
		return nil, nil, fmt.Errorf("worker: %w", err)
	}
	var pub Publisher = routine
	if id.UrgentQueueURL != "" {
		urgent, err := sqs.NewPublisher(client, id.UrgentQueueURL, sqs.PublisherOptions{Logger: logger})
		if err != nil {
			return nil, nil, fmt.Errorf("worker: %w", err)
		}
		pub = twoQueues{routine: routine, urgent: urgent}
	}
	st, err := dynamo.NewStore(dynamodb.NewFromConfig(cfg), id.JobsTable)
	if err != nil {
		return nil, nil, fmt.Errorf("worker: %w", err)
	}
	return pub, st, nil
}

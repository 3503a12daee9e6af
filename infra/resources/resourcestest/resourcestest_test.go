package resourcestest_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/resources/resourcestest"
)

func TestForTestGivesEveryBinaryItsNames(t *testing.T) {
	cfg := awstest.Config(t)
	var stack *resources.Stack
	t.Run("inner", func(t *testing.T) {
		stack = resourcestest.ForTest(t, cfg)
		env := stack.Env()
		for _, key := range []string{resources.EnvJobsTable, resources.EnvLeaseTable, resources.EnvWorkerQueueURL, resources.EnvWorkerUrgentQueueURL, resources.EnvWorkerDLQURL} {
			if env[key] == "" {
				t.Errorf("Env()[%s] is empty; env = %v", key, env)
			}
		}
		if _, err := dynamodb.NewFromConfig(cfg).DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String(env[resources.EnvJobsTable])}); err != nil {
			t.Errorf("jobs table: %v", err)
		}
	})
	// The inner test's cleanup has run: everything must be gone.
	ctx := context.Background()
	env := stack.Env()
	if _, err := dynamodb.NewFromConfig(cfg).DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(env[resources.EnvJobsTable])}); err == nil {
		t.Errorf("jobs table %s still exists after the test ended", env[resources.EnvJobsTable])
	}
	if _, err := sqs.NewFromConfig(cfg).GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(env[resources.EnvWorkerQueueURL])}); err == nil {
		t.Errorf("worker queue %s still exists after the test ended", env[resources.EnvWorkerQueueURL])
	}
}

// Tests in one package may call ForTest in parallel; each gets its own
// stack, and loading the template concurrently must be race-free.
func TestParallelStacksAreSeparate(t *testing.T) {
	cfg := awstest.Config(t)
	names := make(chan string, 2)
	t.Run("group", func(t *testing.T) {
		for _, name := range []string{"a", "b"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				names <- resourcestest.ForTest(t, cfg).Env()[resources.EnvJobsTable]
			})
		}
	})
	close(names)
	a, b := <-names, <-names
	if a == "" || a == b {
		t.Errorf("parallel stacks got jobs tables %q and %q, want two different ones", a, b)
	}
}

func TestForTestWithParametersOverrides(t *testing.T) {
	cfg := awstest.Config(t)
	stack := resourcestest.ForTestWithParameters(t, cfg, map[string]string{"WorkerMaxReceiveCount": "1"})
	url := stack.Env()[resources.EnvWorkerQueueURL]
	out, err := sqs.NewFromConfig(cfg).GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameRedrivePolicy},
	})
	if err != nil {
		t.Fatal(err)
	}
	var redrive struct{ MaxReceiveCount json.Number }
	if err := json.Unmarshal([]byte(out.Attributes["RedrivePolicy"]), &redrive); err != nil || redrive.MaxReceiveCount != "1" {
		t.Errorf("RedrivePolicy = %s (%v), want maxReceiveCount 1", out.Attributes["RedrivePolicy"], err)
	}
}

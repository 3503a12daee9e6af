package resourcestest_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

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
		for _, key := range []string{resources.EnvJobsTable, resources.EnvLeaseTable, resources.EnvWorkerQueueURL, resources.EnvWorkerDLQURL} {
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

package resources

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	cfn "github.com/awslabs/goformation/v7/cloudformation/sqs"
)

var queueNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,80}$`)

// queueSpec is a queue's template properties, resolved into the attribute
// map that CreateQueue and SetQueueAttributes take.
type queueSpec struct {
	name  string
	fifo  bool
	attrs map[string]string
	tags  map[string]string
}

func newQueueSpec(stackName, logicalID string, props *cfn.Queue) (*queueSpec, error) {
	fifo := aws.ToBool(props.FifoQueue)
	name := stackName + "-" + logicalID
	if fifo {
		name += ".fifo"
	}
	if props.QueueName != nil {
		name = *props.QueueName
	}
	base, hasSuffix := strings.CutSuffix(name, ".fifo")
	switch {
	case fifo && !hasSuffix:
		return nil, fmt.Errorf("queue name %q: a FIFO queue's name must end in .fifo", name)
	case !fifo && hasSuffix:
		return nil, fmt.Errorf("queue name %q ends in .fifo but FifoQueue is not true", name)
	case !queueNameRE.MatchString(base) || len(name) > 80:
		return nil, fmt.Errorf("queue name %q is not valid: up to 80 letters, digits, '-' or '_'", name)
	}

	attrs := map[string]string{}
	setInt := func(key string, v *int) {
		if v != nil {
			attrs[key] = strconv.Itoa(*v)
		}
	}
	setBool := func(key string, v *bool) {
		if v != nil {
			attrs[key] = strconv.FormatBool(*v)
		}
	}
	setString := func(key string, v *string) {
		if v != nil {
			attrs[key] = *v
		}
	}
	setInt(string(types.QueueAttributeNameDelaySeconds), props.DelaySeconds)
	setInt(string(types.QueueAttributeNameMaximumMessageSize), props.MaximumMessageSize)
	setInt(string(types.QueueAttributeNameMessageRetentionPeriod), props.MessageRetentionPeriod)
	setInt(string(types.QueueAttributeNameReceiveMessageWaitTimeSeconds), props.ReceiveMessageWaitTimeSeconds)
	setInt(string(types.QueueAttributeNameVisibilityTimeout), props.VisibilityTimeout)
	setInt(string(types.QueueAttributeNameKmsDataKeyReusePeriodSeconds), props.KmsDataKeyReusePeriodSeconds)
	setString(string(types.QueueAttributeNameKmsMasterKeyId), props.KmsMasterKeyId)
	setBool(string(types.QueueAttributeNameSqsManagedSseEnabled), props.SqsManagedSseEnabled)
	setBool(string(types.QueueAttributeNameContentBasedDeduplication), props.ContentBasedDeduplication)
	setString(string(types.QueueAttributeNameDeduplicationScope), props.DeduplicationScope)
	setString(string(types.QueueAttributeNameFifoThroughputLimit), props.FifoThroughputLimit)
	if fifo {
		attrs[string(types.QueueAttributeNameFifoQueue)] = "true"
	}
	for key, v := range map[types.QueueAttributeName]any{
		types.QueueAttributeNameRedrivePolicy:      props.RedrivePolicy,
		types.QueueAttributeNameRedriveAllowPolicy: props.RedriveAllowPolicy,
	} {
		if v == nil {
			continue
		}
		doc, err := jsonText(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		attrs[string(key)] = doc
	}

	tags := map[string]string{}
	for _, t := range props.Tags {
		tags[t.Key] = t.Value
	}
	return &queueSpec{name: name, fifo: fifo, attrs: attrs, tags: tags}, nil
}

// ensureQueue creates the queue, or finds the existing one and sets the
// template's attributes on it. Whether a queue is FIFO cannot change, but
// SQS ties it to the name (".fifo"), so a found queue is of the right kind.
func ensureQueue(ctx context.Context, client *sqs.Client, logicalID string, spec *queueSpec) (Resource, error) {
	res := Resource{LogicalID: logicalID, Type: TypeQueue, Name: spec.name}
	url, err := queueURL(ctx, client, spec.name)
	if err != nil {
		return res, err
	}
	if url == "" {
		in := &sqs.CreateQueueInput{QueueName: aws.String(spec.name), Attributes: spec.attrs}
		if len(spec.tags) > 0 {
			in.Tags = spec.tags
		}
		out, err := client.CreateQueue(ctx, in)
		var exists *types.QueueNameExists
		switch {
		case errors.As(err, &exists):
			// Created by someone else since we looked, with other attributes.
			if url, err = queueURL(ctx, client, spec.name); err != nil {
				return res, err
			}
		case err != nil:
			return res, fmt.Errorf("create queue %s: %w", spec.name, err)
		default:
			res.Created = true
			url = aws.ToString(out.QueueUrl)
		}
	}
	res.URL = url

	if res.ARN, err = queueARN(ctx, client, url); err != nil {
		return res, err
	}
	if res.Created {
		return res, nil
	}
	// Every attribute but FifoQueue can change in place, so an existing queue
	// is brought in line with the template, as a stack update would.
	set := make(map[string]string, len(spec.attrs))
	for k, v := range spec.attrs {
		if k != string(types.QueueAttributeNameFifoQueue) {
			set[k] = v
		}
	}
	if len(set) > 0 {
		if _, err := client.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(url), Attributes: set}); err != nil {
			return res, fmt.Errorf("update attributes of queue %s: %w", spec.name, err)
		}
	}
	return res, nil
}

// queueURL returns "" when the queue does not exist.
func queueURL(ctx context.Context, client *sqs.Client, name string) (string, error) {
	out, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	var missing *types.QueueDoesNotExist
	if errors.As(err, &missing) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up queue %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

func queueARN(ctx context.Context, client *sqs.Client, url string) (string, error) {
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", fmt.Errorf("read the ARN of queue %s: %w", url, err)
	}
	arn := out.Attributes[string(types.QueueAttributeNameQueueArn)]
	if arn == "" {
		return "", fmt.Errorf("queue %s reports no QueueArn", url)
	}
	return arn, nil
}

// deleteQueue deletes the queue; a missing queue is not an error.
func deleteQueue(ctx context.Context, client *sqs.Client, url string) error {
	_, err := client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
	var missing *types.QueueDoesNotExist
	if err != nil && !errors.As(err, &missing) {
		return fmt.Errorf("delete queue %s: %w", url, err)
	}
	return nil
}

package accounting

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

const sqsService = awssqs.ServiceID

// BillingChunk is SQS's billing unit of payload: each started 64 KiB of a
// request's payload is billed as one request.
const BillingChunk = 64 * 1024

// sqsBilled is the number of requests SQS bills for one attempt: the
// payload of a send is what the request carries, that of a receive what
// the response carries. Everything else is one request.
func sqsBilled(params, result any, _ error) int64 {
	n := 0
	switch p := params.(type) {
	case *awssqs.SendMessageInput:
		n += len(aws.ToString(p.MessageBody)) + attributesSize(p.MessageAttributes) + systemAttributesSize(p.MessageSystemAttributes)
	case *awssqs.SendMessageBatchInput:
		for _, e := range p.Entries {
			n += len(aws.ToString(e.MessageBody)) + attributesSize(e.MessageAttributes) + systemAttributesSize(e.MessageSystemAttributes)
		}
	}
	if r, ok := result.(*awssqs.ReceiveMessageOutput); ok {
		for _, m := range r.Messages {
			n += len(aws.ToString(m.Body)) + attributesSize(m.MessageAttributes)
		}
	}
	return BilledRequests(n)
}

// BilledRequests is how many requests SQS bills for one call whose payload
// is n bytes: one per started 64 KiB, and at least one.
func BilledRequests(n int) int64 {
	if n <= BillingChunk {
		return 1
	}
	return int64((n + BillingChunk - 1) / BillingChunk)
}

// attributesSize follows SQS's rule for message size: name, type and value
// of each attribute count towards it.
func attributesSize(attrs map[string]types.MessageAttributeValue) int {
	n := 0
	for name, v := range attrs {
		n += len(name) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue)) + len(v.BinaryValue)
	}
	return n
}

func systemAttributesSize(attrs map[string]types.MessageSystemAttributeValue) int {
	n := 0
	for name, v := range attrs {
		n += len(name) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue)) + len(v.BinaryValue)
	}
	return n
}

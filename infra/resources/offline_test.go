package resources

import (
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// countingDoer counts the requests the SDK tries to send and sends none.
type countingDoer struct{ n atomic.Int32 }

func (d *countingDoer) Do(*http.Request) (*http.Response, error) {
	d.n.Add(1)
	return nil, http.ErrHandlerTimeout
}

// Bad input must be caught before the first AWS call, so a failed Create
// never leaves half a stack behind.
func TestCreateRejectsBadInputBeforeCallingAWS(t *testing.T) {
	tmpl := load(t, "../../../template.yaml")
	doer := &countingDoer{}
	ddb := dynamodb.New(dynamodb.Options{Region: "us-east-1", HTTPClient: doer})
	sq := sqs.New(sqs.Options{Region: "us-east-1", HTTPClient: doer})
	for name, opts := range map[string]Options{
		"below minimum":     {StackName: "s", Parameters: map[string]string{"WorkerMaxReceiveCount": "0"}},
		"not a number":      {StackName: "s", Parameters: map[string]string{"WorkerMaxReceiveCount": "many"}},
		"unknown parameter": {StackName: "s", Parameters: map[string]string{"MaxReceives": "3"}},
		"bad stack name":    {StackName: "weir_local"},
	} {
		if _, err := tmpl.Create(t.Context(), ddb, sq, opts); err == nil {
			t.Errorf("%s: Create succeeded", name)
		}
	}
	if n := doer.n.Load(); n != 0 {
		t.Errorf("%d requests were sent; want none", n)
	}
	// The same clients do send once the input is good: the check above
	// would be meaningless if they could not.
	if _, err := tmpl.Create(t.Context(), ddb, sq, Options{StackName: "s"}); err == nil {
		t.Fatal("Create with no reachable endpoint succeeded")
	}
	if doer.n.Load() == 0 {
		t.Error("no request was attempted with valid input")
	}
}

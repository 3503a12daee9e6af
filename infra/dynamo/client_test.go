package dynamo_test

import (
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"

	"github.com/weirstream/weir/infra/dynamo"
)

// A take-over's burst of requests reuses idle connections: the client
// keeps far more than the SDK's 10 per host, and a client the caller
// brought is left as it is.
func TestClientKeepsEnoughIdleConnectionsForATakeover(t *testing.T) {
	for name, hc := range map[string]aws.HTTPClient{"default": nil, "buildable": awshttp.NewBuildableClient()} {
		db := dynamo.NewClient(aws.Config{Region: "us-east-1", HTTPClient: hc})
		bc, ok := db.Options().HTTPClient.(*awshttp.BuildableClient)
		if !ok {
			t.Fatalf("%s: HTTP client is %T, want the SDK's buildable client", name, db.Options().HTTPClient)
		}
		if n := bc.GetTransport().MaxIdleConnsPerHost; n < 128 {
			t.Fatalf("%s: %d idle connections per host, want at least 128", name, n)
		}
	}
	own := &http.Client{}
	db := dynamo.NewClient(aws.Config{Region: "us-east-1", HTTPClient: own})
	if db.Options().HTTPClient != own {
		t.Fatalf("the caller's HTTP client was replaced by %T", db.Options().HTTPClient)
	}
}

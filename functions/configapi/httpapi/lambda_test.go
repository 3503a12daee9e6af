package httpapi_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/weirstream/weir/functions/configapi/httpapi"
)

// invoke sends a fixture through the Lambda runtime's own handler
// wrapper, as the Lambda service would.
func invoke(t *testing.T, h lambda.Handler, fixture string) events.APIGatewayV2HTTPResponse {
	t.Helper()
	payload, err := os.ReadFile(filepath.Join("testdata", "events", fixture))
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Invoke(t.Context(), payload)
	if err != nil {
		t.Fatalf("%s: %v", fixture, err)
	}
	var res events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%s: response %s: %v", fixture, out, err)
	}
	return res
}

func TestTheLambdaAdapterServesTheSameAPI(t *testing.T) {
	e := setup(t)
	h := lambda.NewHandler(httpapi.Lambda(e.h))
	steps := []struct {
		fixture string
		status  int
		etag    string
		mention string
	}{
		{"create-job.json", 201, `"1"`, `"ttl":"2h0m0s"`},
		{"create-job-base64.json", 201, `"1"`, `"id":"encoded"`},
		{"get-job.json", 200, `"1"`, `"checkpoint_interval":"30s"`},
		{"list-jobs.json", 200, "", `"id":"wordcount"`},
		{"patch-without-if-match.json", 428, "", "If-Match"},
		{"create-bad-duration.json", 400, "", "checkpoint_interval"},
		{"patch-job.json", 200, `"2"`, `"stop":"checkpoint"`},
	}
	for _, s := range steps {
		res := invoke(t, h, s.fixture)
		if res.StatusCode != s.status || res.Headers["Etag"] != s.etag || !strings.Contains(res.Body, s.mention) {
			t.Errorf("%s: %d ETag %q %s; want %d ETag %q mentioning %s", s.fixture, res.StatusCode, res.Headers["Etag"], res.Body, s.status, s.etag, s.mention)
		}
	}
	// The local server sees what the Lambda calls wrote.
	r := e.do(t, "GET", "/jobs/wordcount", "")
	if r.header.Get("ETag") != `"2"` {
		t.Errorf("over HTTP after the Lambda calls: ETag %s", r.header.Get("ETag"))
	}
}

func TestTheLambdaAdapterAnswersAnUnreadableEvent(t *testing.T) {
	e := setup(t)
	h := lambda.NewHandler(httpapi.Lambda(e.h))
	out, err := h.Invoke(t.Context(), []byte(`{"rawPath":"/jobs","isBase64Encoded":true,"body":"%%%","requestContext":{"http":{"method":"POST"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var res events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 400 || res.Headers["Content-Type"] != "application/problem+json" || !strings.Contains(res.Body, "base64") {
		t.Errorf("unreadable event: %d %v %s", res.StatusCode, res.Headers, res.Body)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/resources/resourcestest"
)

func run(t *testing.T, load configLoader, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCommand(load)
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

func templatePath(t *testing.T) string {
	t.Helper()
	p, err := resourcestest.TemplatePath()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Bad flags are reported before the AWS config is even loaded.
func TestBadFlagsAreRejectedBeforeAnyAWSCall(t *testing.T) {
	tmpl := templatePath(t)
	noAWS := func(context.Context) (aws.Config, error) {
		t.Error("AWS config loaded despite bad flags")
		return aws.Config{}, nil
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"create", "--template", tmpl}, `required flag(s) "stack" not set`},
		{[]string{"create", "--template", tmpl, "--stack", "s", "--param", "WorkerMaxReceiveCount"}, `--param "WorkerMaxReceiveCount": want NAME=VALUE`},
		{[]string{"create", "--template", tmpl, "--stack", "s", "--param", "=5"}, `want NAME=VALUE`},
		{[]string{"create", "--template", tmpl, "--stack", "s", "--param", "A=1", "--param", "A=2"}, `--param A is given twice`},
		{[]string{"create", "--template", tmpl, "--stack", "s", "--format", "yaml"}, `--format "yaml": want env or json`},
		{[]string{"create", "--template", "testdata/missing.yaml", "--stack", "s"}, `--template: read template`},
		{[]string{"create", "--template", tmpl, "--stack", "s", "--timeout", "0s"}, `--timeout 0s: must be positive`},
		{[]string{"create", "--template", tmpl, "--stack", "s", "extra"}, `unknown command "extra"`},
		{[]string{"delete", "--template", tmpl}, `required flag(s) "stack" not set`},
		{[]string{"create", "--template", tmpl, "--stack", "s", "--bogus"}, `unknown flag: --bogus`},
	}
	for _, tt := range tests {
		_, _, err := run(t, noAWS, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want one containing %q", tt.args, err, tt.want)
		}
	}
}

func TestCreatePrintsTheEnvironmentAndDeleteRemovesTheStack(t *testing.T) {
	cfg := awstest.Config(t)
	load := func(context.Context) (aws.Config, error) { return cfg, nil }
	tmpl := templatePath(t)
	stack := awstest.Name(t, "cli")
	ddb := dynamodb.NewFromConfig(cfg)
	t.Cleanup(func() {
		// In case an assertion stops the test before delete runs.
		_, _, _ = run(t, load, "delete", "--template", tmpl, "--stack", stack)
	})

	out, progress, err := run(t, load, "create", "--template", tmpl, "--stack", stack, "--param", "WorkerMaxReceiveCount=2")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("output line %q is not NAME=value; output:\n%s", line, out)
		}
		env[k] = v
	}
	if env["WEIR_JOBS_TABLE"] != stack+"-jobs" || env["WEIR_LEASE_TABLE"] != stack+"-leases" ||
		!strings.HasSuffix(env["WEIR_WORKER_QUEUE_URL"], "/"+stack+"-worker-messages") ||
		!strings.HasSuffix(env["WEIR_WORKER_DLQ_URL"], "/"+stack+"-worker-dlq") ||
		env["WEIR_SCHEDULE_GROUP"] != stack+"-ttl" || !strings.HasSuffix(env["WEIR_SCHEDULE_DLQ_ARN"], ":"+stack+"-schedule-dlq") || len(env) != 7 {
		t.Errorf("create printed %v", env)
	}
	if strings.Count(progress, "created") != 7 {
		t.Errorf("progress on stderr = %q, want seven 'created' lines", progress)
	}
	if _, err := ddb.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(env["WEIR_JOBS_TABLE"])}); err != nil {
		t.Errorf("jobs table: %v", err)
	}
	attrs, err := sqs.NewFromConfig(cfg).GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(env["WEIR_WORKER_QUEUE_URL"]), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameRedrivePolicy}})
	if err != nil {
		t.Fatal(err)
	}
	var redrive struct{ MaxReceiveCount json.Number }
	if err := json.Unmarshal([]byte(attrs.Attributes["RedrivePolicy"]), &redrive); err != nil || redrive.MaxReceiveCount.String() != "2" {
		t.Errorf("RedrivePolicy = %s (%v), want maxReceiveCount 2 from --param", attrs.Attributes["RedrivePolicy"], err)
	}

	out, _, err = run(t, load, "create", "--template", tmpl, "--stack", stack, "--param", "WorkerMaxReceiveCount=2", "--format", "json")
	if err != nil {
		t.Fatalf("create --format json: %v", err)
	}
	var doc struct {
		Stack     string
		Env       map[string]string
		Resources []struct {
			LogicalID string `json:"logicalId"`
			ARN       string `json:"arn"`
			Created   bool   `json:"created"`
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	if doc.Stack != stack || len(doc.Resources) != 7 || doc.Env["WEIR_JOBS_TABLE"] != env["WEIR_JOBS_TABLE"] {
		t.Errorf("json output = %+v", doc)
	}
	for _, r := range doc.Resources {
		if r.Created || r.ARN == "" {
			t.Errorf("second create: %+v, want found (not created) with an ARN", r)
		}
	}

	out, _, err = run(t, load, "delete", "--template", tmpl, "--stack", stack)
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if strings.Count(out, "deleted") != 7 {
		t.Errorf("delete printed %q, want seven 'deleted' lines", out)
	}
	if _, err := ddb.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(env["WEIR_JOBS_TABLE"])}); err == nil {
		t.Errorf("jobs table still exists after delete")
	}
	out, _, err = run(t, load, "delete", "--template", tmpl, "--stack", stack)
	if err != nil || !strings.Contains(out, "no data resources to delete") {
		t.Errorf("second delete: %q, %v", out, err)
	}
}

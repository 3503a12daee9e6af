package resources

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// resolveAll runs the dry run and returns each resource's resolved spec.
func resolveAll(t *testing.T, tmpl *Template, opts Options) (map[string]any, []string, error) {
	t.Helper()
	specs := map[string]any{}
	var order []string
	fake := placeholder("eu-west-1")
	_, err := tmpl.walk(opts, "eu-west-1", func(id string, spec any) (Resource, error) {
		specs[id] = spec
		order = append(order, id)
		return fake(id, spec)
	})
	return specs, order, err
}

func load(t *testing.T, name string) *Template {
	t.Helper()
	tmpl, err := Load(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

func TestTheRepositoryTemplateResolvesToTheAgreedNames(t *testing.T) {
	tmpl := load(t, "../../../template.yaml")
	if got, want := tmpl.LogicalIDs(), []string{"JobsTable", "LeaseTable", "ScheduleDeadLetterQueue", "TtlScheduleGroup", "WorkerDeadLetterQueue", "WorkerQueue", "WorkerUrgentQueue"}; !slices.Equal(got, want) {
		t.Fatalf("LogicalIDs = %v, want %v (the DLQ before the queue that names it)", got, want)
	}
	if got := tmpl.Parameters(); !slices.Contains(got, "WorkerMaxReceiveCount") || !slices.Contains(got, "ControllerSubnets") {
		t.Errorf("Parameters = %v", got)
	}
	specs, _, err := resolveAll(t, tmpl, Options{StackName: "weir-local"})
	if err != nil {
		t.Fatal(err)
	}
	jobs := specs["JobsTable"].(*tableSpec)
	if jobs.name != "weir-local-jobs" {
		t.Errorf("jobs table name = %q", jobs.name)
	}
	in, err := jobs.createInput()
	if err != nil {
		t.Fatal(err)
	}
	if in.BillingMode != "PAY_PER_REQUEST" || in.SSESpecification == nil || !*in.SSESpecification.Enabled {
		t.Errorf("jobs CreateTable billing %q, SSE %+v", in.BillingMode, in.SSESpecification)
	}
	if len(in.GlobalSecondaryIndexes) != 1 || *in.GlobalSecondaryIndexes[0].IndexName != "active-jobs" ||
		!slices.Equal(in.GlobalSecondaryIndexes[0].Projection.NonKeyAttributes, []string{"version"}) {
		t.Errorf("jobs indexes = %+v", in.GlobalSecondaryIndexes)
	}
	if ttl := jobs.props.TimeToLiveSpecification; ttl == nil || !ttl.Enabled || *ttl.AttributeName != "expires_at" {
		t.Errorf("jobs TTL = %+v", ttl)
	}

	q := specs["WorkerQueue"].(*queueSpec)
	if q.name != "weir-local-worker-messages" {
		t.Errorf("worker queue name = %q", q.name)
	}
	var redrive map[string]any
	if err := json.Unmarshal([]byte(q.attrs["RedrivePolicy"]), &redrive); err != nil {
		t.Fatalf("RedrivePolicy %q: %v", q.attrs["RedrivePolicy"], err)
	}
	if redrive["deadLetterTargetArn"] != "arn:aws:sqs:eu-west-1:000000000000:weir-local-worker-dlq" {
		t.Errorf("redrive target = %v, want the DLQ's ARN", redrive["deadLetterTargetArn"])
	}
	// A number, not the string "5": Ref of a Number parameter.
	if redrive["maxReceiveCount"] != float64(5) {
		t.Errorf("maxReceiveCount = %#v, want 5", redrive["maxReceiveCount"])
	}
	for k, want := range map[string]string{"VisibilityTimeout": "30", "MessageRetentionPeriod": "345600", "ReceiveMessageWaitTimeSeconds": "20", "SqsManagedSseEnabled": "true"} {
		if q.attrs[k] != want {
			t.Errorf("worker queue %s = %q, want %q", k, q.attrs[k], want)
		}
	}
	dlq := specs["WorkerDeadLetterQueue"].(*queueSpec)
	if dlq.name != "weir-local-worker-dlq" || dlq.attrs["MessageRetentionPeriod"] != "1209600" {
		t.Errorf("DLQ = %+v", dlq)
	}
}

func TestTheThreeFormsResolveAndOtherTypesAreSkipped(t *testing.T) {
	tmpl := load(t, "intrinsics.yaml")
	if want := []string{"Archive", "Events", "Feed", "Group"}; !slices.Equal(tmpl.LogicalIDs(), want) {
		t.Errorf("LogicalIDs = %v, want %v (the function and role skipped)", tmpl.LogicalIDs(), want)
	}
	specs, _, err := resolveAll(t, tmpl, Options{StackName: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if got := specs["Events"].(*tableSpec).name; got != "s-events" {
		t.Errorf("Sub: table name = %q, want s-events", got)
	}
	archive := specs["Archive"].(*queueSpec)
	if archive.name != "s-archive" || archive.attrs["MessageRetentionPeriod"] != "60" {
		t.Errorf("Sub and Ref: archive = %+v", archive)
	}
	feed := specs["Feed"].(*queueSpec)
	if feed.name != "s-Feed" {
		t.Errorf("unnamed queue = %q, want s-Feed", feed.name)
	}
	if !strings.Contains(feed.attrs["RedrivePolicy"], `"arn:aws:sqs:eu-west-1:000000000000:s-archive"`) {
		t.Errorf("GetAtt Archive.Arn: RedrivePolicy = %s", feed.attrs["RedrivePolicy"])
	}
	if got := specs["Group"].(*scheduleGroupSpec).name; got != "s-ttl" {
		t.Errorf("schedule group = %q, want s-ttl", got)
	}
}

// Every form outside the three is refused with an error that names it and
// the supported forms, rather than being half-resolved.
func TestOtherIntrinsicFormsAreRefused(t *testing.T) {
	tests := map[string]string{
		"Join":              `!Join ["-", [a, b]]`,
		"Select":            `!Select [0, [a, b]]`,
		"If":                `!If [C, a, b]`,
		"FindInMap":         `!FindInMap [M, a, b]`,
		"Base64":            `!Base64 abc`,
		"ImportValue":       `!ImportValue shared`,
		"Sub of a param":    `!Sub "${P}-q"`,
		"Sub with vars":     `!Sub ["${X}-q", {X: a}]`,
		"Sub of region":     `!Sub "${AWS::Region}-q"`,
		"Sub of an attr":    `!Sub "${D.Arn}"`,
		"Ref of pseudo":     `!Ref AWS::Region`,
		"Ref of a resource": `!Ref D`,
		"GetAtt not Arn":    `!GetAtt D.QueueName`,
	}
	for name, expr := range tests {
		t.Run(name, func(t *testing.T) {
			tmpl, err := Parse([]byte(`
Parameters:
  P: {Type: String, Default: p}
Resources:
  D: {Type: AWS::SQS::Queue}
  Q:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: ` + expr + `
`))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			_, _, err = resolveAll(t, tmpl, Options{StackName: "s"})
			if err == nil {
				t.Fatalf("%s resolved; want it refused", expr)
			}
			for _, w := range []string{"Q (AWS::SQS::Queue)", "Properties.QueueName", "supported: "} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestConditionOnADataResourceIsRefused(t *testing.T) {
	_, err := Parse([]byte(`
Conditions:
  C: !Equals [a, b]
Resources:
  Q: {Type: AWS::SQS::Queue, Condition: C}
`))
	if err == nil || !strings.Contains(err.Error(), "Q (AWS::SQS::Queue) has Condition C") {
		t.Errorf("err = %v, want one naming Q and its condition", err)
	}
}

func TestParameters(t *testing.T) {
	tmpl := load(t, "params.yaml")
	tests := []struct {
		name      string
		params    map[string]string
		wantQueue string // queue name when valid
		wantErr   []string
	}{
		{name: "defaults", wantQueue: "weir"},
		{name: "overrides", params: map[string]string{"Env": "prod", "Prefix": "ab", "Count": "1000", "Retention": "60"}, wantQueue: "ab"},
		{name: "not a number", params: map[string]string{"Count": "five"}, wantErr: []string{`parameter Count="five": not a number`}},
		{name: "below minimum", params: map[string]string{"Count": "0"}, wantErr: []string{"Count", "below the minimum 1"}},
		{name: "above maximum", params: map[string]string{"Count": "1001"}, wantErr: []string{"Count", "above the maximum 1000"}},
		{name: "infinite", params: map[string]string{"Count": "Inf"}, wantErr: []string{"Count", "not a number"}},
		{name: "not allowed", params: map[string]string{"Env": "staging"}, wantErr: []string{"Env", "not one of the allowed values dev, prod"}},
		{name: "number not allowed", params: map[string]string{"Retention": "61"}, wantErr: []string{"Retention", "not one of the allowed values 60, 345600, 1209600"}},
		{name: "pattern", params: map[string]string{"Prefix": "Weir"}, wantErr: []string{"Prefix", "does not match", "(lower-case letters, digits and dashes)"}},
		{name: "pattern is anchored", params: map[string]string{"Prefix": "ok!"}, wantErr: []string{"Prefix", "does not match"}},
		{name: "too short", params: map[string]string{"Prefix": "a"}, wantErr: []string{"Prefix", "shorter than the minimum length 2"}},
		{name: "too long", params: map[string]string{"Prefix": "abcdefghijk"}, wantErr: []string{"Prefix", "longer than the maximum length 10"}},
		{name: "unknown", params: map[string]string{"Colour": "red"}, wantErr: []string{"Colour", "no such parameter", "known: Count, Env, Image, Owners, Prefix, Retention"}},
		{name: "all reported together", params: map[string]string{"Count": "0", "Env": "x"}, wantErr: []string{"Count", "Env"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			specs, _, err := resolveAll(t, tmpl, Options{StackName: "s", Parameters: tt.params})
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error, want one mentioning %q", tt.wantErr)
				}
				var perr *ParameterError
				if !errors.As(err, &perr) {
					t.Errorf("error %v is not a *ParameterError", err)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			q := specs["Queue"].(*queueSpec)
			if q.name != tt.wantQueue {
				t.Errorf("queue name = %q, want %q", q.name, tt.wantQueue)
			}
		})
	}

	specs, _, err := resolveAll(t, tmpl, Options{StackName: "s", Parameters: map[string]string{"Owners": "a, b,c", "Count": "7"}})
	if err != nil {
		t.Fatal(err)
	}
	q := specs["Queue"].(*queueSpec)
	if q.tags["env"] != "dev" {
		t.Errorf("Ref Env tag = %q, want dev", q.tags["env"])
	}
	if want := `{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:000000000000:dlq","maxReceiveCount":7}`; q.attrs["RedrivePolicy"] != want {
		t.Errorf("RedrivePolicy = %s, want %s", q.attrs["RedrivePolicy"], want)
	}
}

func TestParameterWithoutDefaultMustBeGiven(t *testing.T) {
	tmpl, err := Parse([]byte(`
Parameters:
  Name: {Type: String}
Resources:
  Q:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Ref Name
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := resolveAll(t, tmpl, Options{StackName: "s"}); err == nil || !strings.Contains(err.Error(), "parameter Name: has no Default") {
		t.Errorf("err = %v, want one saying Name needs a value", err)
	}
	specs, _, err := resolveAll(t, tmpl, Options{StackName: "s", Parameters: map[string]string{"Name": "given"}})
	if err != nil || specs["Q"].(*queueSpec).name != "given" {
		t.Errorf("with Name=given: %v, %+v", err, specs["Q"])
	}
}

// Templates that cannot be loaded, or whose tables and queues cannot be
// resolved, fail with an error that names the resource and the problem.
func TestBadTemplates(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		parseErr bool
		want     []string
	}{
		{
			name:     "cycle",
			parseErr: true,
			yaml: `
Resources:
  A: {Type: AWS::SQS::Queue, Properties: {RedrivePolicy: {deadLetterTargetArn: !GetAtt B.Arn, maxReceiveCount: 1}}}
  B: {Type: AWS::SQS::Queue, Properties: {RedrivePolicy: {deadLetterTargetArn: !GetAtt A.Arn, maxReceiveCount: 1}}}
`,
			want: []string{"cycle", "A -> B -> A"},
		},
		{
			name: "refers to a function",
			yaml: `
Resources:
  Fn: {Type: AWS::Serverless::Function, Properties: {Handler: bootstrap}}
  T:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Ref Fn
`,
			want: []string{"T (AWS::SQS::Queue)", "Properties.QueueName: Ref", "Fn is a AWS::Serverless::Function, which only CloudFormation creates"},
		},
		{
			name: "GetAtt of a function",
			yaml: `
Resources:
  Fn: {Type: AWS::Serverless::Function, Properties: {Handler: bootstrap}}
  T:
    Type: AWS::SQS::Queue
    Properties:
      RedrivePolicy: {deadLetterTargetArn: !GetAtt Fn.Arn, maxReceiveCount: 1}
`,
			want: []string{"T (AWS::SQS::Queue)", "Fn is a AWS::Serverless::Function, which only CloudFormation creates"},
		},
		{
			name: "unknown property",
			yaml: `
Resources:
  T:
    Type: AWS::DynamoDB::Table
    Properties:
      TableNme: x
      KeySchema: [{AttributeName: id, KeyType: HASH}]
`,
			want: []string{"T (AWS::DynamoDB::Table)", `unknown field "TableNme"`},
		},
		{
			name: "unsupported intrinsic",
			yaml: `
Resources:
  Q:
    Type: AWS::SQS::Queue
    Properties:
      KmsMasterKeyId: !ImportValue shared-key
`,
			want: []string{"Q (AWS::SQS::Queue)", "Properties.KmsMasterKeyId: Fn::ImportValue: not supported"},
		},
		{
			name: "unknown name in Sub",
			yaml: `
Resources:
  Q:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-${Nope}"
`,
			want: []string{"${Nope} is not resolved here"},
		},
		{
			name: "account id unknown",
			yaml: `
Resources:
  Q:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::AccountId}-q"
`,
			want: []string{"${AWS::AccountId} is not resolved here"},
		},
		{
			name: "FIFO without .fifo",
			yaml: `
Resources:
  Q: {Type: AWS::SQS::Queue, Properties: {FifoQueue: true, QueueName: plain}}
`,
			want: []string{`queue name "plain": a FIFO queue's name must end in .fifo`},
		},
		{
			name: "bad table name",
			yaml: `
Resources:
  T:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: "no spaces"
      KeySchema: [{AttributeName: id, KeyType: HASH}]
`,
			want: []string{`table name "no spaces" is not valid`},
		},
		{
			name: "uses an SSM parameter",
			yaml: `
Parameters:
  Name: {Type: "AWS::SSM::Parameter::Value<String>", Default: /x}
Resources:
  Q: {Type: AWS::SQS::Queue, Properties: {QueueName: !Ref Name}}
`,
			want: []string{"Name", "resolved only by CloudFormation"},
		},
		{
			name:     "bad pattern",
			parseErr: true,
			yaml: `
Parameters:
  P: {Type: String, AllowedPattern: "a(", Default: a}
Resources:
  Q: {Type: AWS::SQS::Queue}
`,
			want: []string{"parameter P: AllowedPattern", "not a valid regular expression"},
		},
		{
			name:     "not YAML",
			parseErr: true,
			yaml:     "Resources: [",
			want:     []string{"parse template"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := Parse([]byte(tt.yaml))
			if !tt.parseErr {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				_, _, err = resolveAll(t, tmpl, Options{StackName: "s"})
			}
			if err == nil {
				t.Fatalf("no error, want one mentioning %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestStackNameIsChecked(t *testing.T) {
	tmpl := load(t, "fifo.yaml")
	for _, name := range []string{"", "1abc", "has_underscore", strings.Repeat("a", 129)} {
		if _, _, err := resolveAll(t, tmpl, Options{StackName: name}); err == nil || !strings.Contains(err.Error(), "stack name") {
			t.Errorf("stack name %q: err = %v, want a stack name error", name, err)
		}
	}
}

// goformation's YAML reader writes package-level state on every parse;
// tests in other packages load the template from parallel tests.
func TestParseIsSafeConcurrently(t *testing.T) {
	for i := range 4 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			load(t, "intrinsics.yaml")
		})
	}
}

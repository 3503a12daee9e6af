package resources

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7/intrinsics"
)

// The stack's template is checked as written (intrinsics unresolved): no
// IAM action with a wildcard, every statement scoped to the stack's own
// resources, every resource the code names present, every function with a
// log group that has a retention.

// accountWideActions are the actions IAM grants only on "*".
var accountWideActions = []string{"ecr:GetAuthorizationToken", "ecs:DescribeTaskDefinition"}

type cfnDoc struct {
	Resources map[string]struct {
		Type       string
		Properties map[string]any
	}
}

func parseRaw(t *testing.T, data []byte) cfnDoc {
	t.Helper()
	js, err := intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	var doc cfnDoc
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// checkPolicies reports wildcard actions and statements not scoped to the
// stack's resources.
func checkPolicies(doc cfnDoc) []string {
	var problems []string
	for id, r := range doc.Resources {
		if r.Type != "AWS::IAM::Role" && r.Type != "AWS::Serverless::Function" {
			continue
		}
		if r.Type == "AWS::Serverless::Function" && r.Properties["Policies"] != nil {
			problems = append(problems, id+": give the function a Role with explicit statements, not SAM Policies")
		}
		policies, _ := r.Properties["Policies"].([]any)
		for _, p := range policies {
			pm, _ := p.(map[string]any)
			pd, _ := pm["PolicyDocument"].(map[string]any)
			stmts, _ := pd["Statement"].([]any)
			for i, s := range stmts {
				st, _ := s.(map[string]any)
				where := fmt.Sprintf("%s policy %v statement %d", id, pm["PolicyName"], i)
				actions := strings_(st["Action"])
				for _, a := range actions {
					if strings.Contains(a, "*") {
						problems = append(problems, fmt.Sprintf("%s: action %q has a wildcard: name each action", where, a))
					}
				}
				if st["NotAction"] != nil || st["NotResource"] != nil {
					problems = append(problems, where+": NotAction/NotResource grant too much")
				}
				for _, res := range asList(st["Resource"]) {
					if s, ok := res.(string); ok {
						accountWide := len(actions) > 0
						for _, a := range actions {
							accountWide = accountWide && slices.Contains(accountWideActions, a)
						}
						if s == "*" && accountWide {
							continue
						}
						problems = append(problems, fmt.Sprintf("%s: resource %q is not one of the stack's own: refer to it with !GetAtt, !Ref or !Sub", where, s))
						continue
					}
					if !refersToStack(res, doc) {
						problems = append(problems, fmt.Sprintf("%s: resource %v does not name a resource of the stack", where, res))
					}
				}
			}
		}
	}
	slices.Sort(problems)
	return problems
}

var subName = regexp.MustCompile(`\$\{([A-Za-z0-9:]+)`)

// refersToStack reports whether an intrinsic names one of the template's
// resources, or the stack's name.
func refersToStack(v any, doc cfnDoc) bool {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return false
	}
	for fn, arg := range m {
		switch fn {
		case "Ref":
			_, ok := doc.Resources[fmt.Sprint(arg)]
			return ok
		case "Fn::GetAtt":
			name, _, ok := getAttTarget(arg)
			_, known := doc.Resources[name]
			return ok && known
		case "Fn::Sub":
			format, _ := arg.(string)
			for _, n := range subName.FindAllStringSubmatch(format, -1) {
				if _, known := doc.Resources[n[1]]; known || n[1] == "AWS::StackName" {
					return true
				}
			}
		}
	}
	return false
}

// checkFunctions reports functions without a log group of their own with a
// retention, and WEIR_* variables a function's code reads but its
// Environment lacks.
func checkFunctions(doc cfnDoc, root string) []string {
	var problems []string
	for id, r := range doc.Resources {
		if r.Type == "AWS::Logs::LogGroup" && r.Properties["RetentionInDays"] == nil {
			problems = append(problems, id+": log group without RetentionInDays")
		}
		if r.Type != "AWS::Serverless::Function" && r.Type != "AWS::Lambda::Function" {
			continue
		}
		lc, _ := r.Properties["LoggingConfig"].(map[string]any)
		ref, _ := lc["LogGroup"].(map[string]any)
		if lg, ok := doc.Resources[fmt.Sprint(ref["Ref"])]; !ok || lg.Type != "AWS::Logs::LogGroup" {
			problems = append(problems, id+": no log group: set LoggingConfig.LogGroup to !Ref of an AWS::Logs::LogGroup")
		}
		env, _ := r.Properties["Environment"].(map[string]any)
		vars, _ := env["Variables"].(map[string]any)
		codeURI, _ := r.Properties["CodeUri"].(string)
		for _, name := range weirVariables(filepath.Join(root, codeURI)) {
			if _, ok := vars[name]; !ok {
				problems = append(problems, fmt.Sprintf("%s: its code reads %s, which its Environment does not set", id, name))
			}
		}
	}
	slices.Sort(problems)
	return problems
}

var weirVar = regexp.MustCompile(`"(WEIR_[A-Z0-9_]+)"`)

// weirVariables lists the WEIR_* names in a function's main package.
func weirVariables(dir string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	var names []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, _ := os.ReadFile(f)
		for _, m := range weirVar.FindAllStringSubmatch(string(data), -1) {
			if !slices.Contains(names, m[1]) {
				names = append(names, m[1])
			}
		}
	}
	return names
}

func strings_(v any) []string {
	var out []string
	for _, e := range asList(v) {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

func TestTheStackTemplateIsLeastPrivilegeAndComplete(t *testing.T) {
	root := "../.."
	data, err := os.ReadFile(filepath.Join(root, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := parseRaw(t, data)
	for _, p := range append(checkPolicies(doc), checkFunctions(doc, root)...) {
		t.Error(p)
	}
	// Every resource the code names by logical id is declared, as a data
	// resource of the right kind.
	for id := range envByLogicalID {
		if r, ok := doc.Resources[id]; !ok || !creatable(r.Type) {
			t.Errorf("the code reads %s from resource %s, which the template lacks", envByLogicalID[id], id)
		}
	}
	for id := range envARNByLogicalID {
		if r, ok := doc.Resources[id]; !ok || !creatable(r.Type) {
			t.Errorf("the code reads %s from resource %s, which the template lacks", envARNByLogicalID[id], id)
		}
	}
	// Every function's code is where the template says.
	for id, r := range doc.Resources {
		if r.Type == "AWS::Serverless::Function" {
			if _, err := os.Stat(filepath.Join(root, fmt.Sprint(r.Properties["CodeUri"]), "main.go")); err != nil {
				t.Errorf("%s: CodeUri %v has no main.go", id, r.Properties["CodeUri"])
			}
		}
	}
}

// The checks themselves catch what they are for.
func TestTemplateChecksCatchMistakes(t *testing.T) {
	doc := parseRaw(t, []byte(`
Resources:
  Table: {Type: AWS::DynamoDB::Table}
  Logs: {Type: AWS::Logs::LogGroup, Properties: {RetentionInDays: 7}}
  Role:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
              - {Effect: Allow, Action: "dynamodb:*", Resource: !GetAtt Table.Arn}
              - {Effect: Allow, Action: [s3:GetObject], Resource: "*"}
              - {Effect: Allow, Action: [sqs:SendMessage], Resource: "arn:aws:sqs:us-east-1:1:other"}
              - {Effect: Allow, Action: [sqs:SendMessage], Resource: !Sub "arn:aws:sqs:${AWS::Region}:1:x"}
              - {Effect: Allow, Action: [ecr:GetAuthorizationToken, ecr:BatchGetImage], Resource: "*"}
              - {Effect: Allow, Action: [ecr:GetAuthorizationToken], Resource: "*"}
              - {Effect: Allow, Action: [dynamodb:GetItem], Resource: !GetAtt Table.Arn}
  Fn:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: fn/, Policies: [AWSLambdaBasicExecutionRole]}
  Logged:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: fn/, LoggingConfig: {LogGroup: !Ref Logs}}
  NoRetention: {Type: AWS::Logs::LogGroup}
`))
	got := checkPolicies(doc)
	for _, want := range []string{`action "dynamodb:*" has a wildcard`, `statement 1: resource "*"`, `statement 2: resource "arn:aws:sqs:us-east-1:1:other"`, "statement 3: resource", `statement 4: resource "*"`, "Fn: give the function a Role"} {
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("checkPolicies missed %q; got %q", want, got)
		}
	}
	if len(got) != 6 {
		t.Errorf("checkPolicies = %d problems, want 6: %q", len(got), got)
	}

	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "fn"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fn", "main.go"), []byte(`package main; var _ = "WEIR_JOBS_TABLE"`), 0o644); err != nil {
		t.Fatal(err)
	}
	got = checkFunctions(doc, dir)
	for _, want := range []string{"Fn: no log group", "Fn: its code reads WEIR_JOBS_TABLE", "Logged: its code reads WEIR_JOBS_TABLE", "NoRetention: log group without RetentionInDays"} {
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("checkFunctions missed %q; got %q", want, got)
		}
	}
	if len(got) != 4 {
		t.Errorf("checkFunctions = %d problems, want 4: %q", len(got), got)
	}
}

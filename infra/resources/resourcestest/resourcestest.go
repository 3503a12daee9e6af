// Package resourcestest gives integration tests their own copy of the
// stack's tables and queues, made from the repository's template.yaml.
package resourcestest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/resources"
)

// ForTest creates the template's tables and queues under a stack name
// unique to this test and deletes them when the test ends. Use it with
// awstest.Config(t), which skips the test unless integration tests are on.
func ForTest(t testing.TB, cfg aws.Config) *resources.Stack {
	t.Helper()
	return ForTestWithParameters(t, cfg, nil)
}

// ForTestWithParameters is ForTest with template parameter overrides, e.g.
// {"WorkerMaxReceiveCount": "1"} to see messages reach the DLQ at once.
func ForTestWithParameters(t testing.TB, cfg aws.Config, params map[string]string) *resources.Stack {
	t.Helper()
	path, err := TemplatePath()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := resources.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ddb := dynamodb.NewFromConfig(cfg)
	sq := sqs.NewFromConfig(cfg)
	opts := resources.Options{StackName: awstest.Name(t, stackBase(t)), Parameters: params}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stack, err := tmpl.Create(ctx, ddb, sq, opts)
	if err != nil {
		t.Fatalf("create test stack %s: %v", opts.StackName, err)
	}
	t.Cleanup(func() {
		// t.Context() is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := stack.Delete(ctx, ddb, sq); err != nil {
			t.Errorf("delete test stack %s: %v", stack.Name, err)
		}
	})
	return stack
}

// stackBase makes a stack-name prefix from the test name, so leftovers in
// the emulator say which test made them. Stack names allow letters, digits
// and '-' and must start with a letter.
func stackBase(t testing.TB) string {
	var b strings.Builder
	b.WriteString("t-")
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
		if b.Len() >= 24 {
			break
		}
	}
	return strings.TrimRight(b.String(), "-")
}

// TemplatePath finds template.yaml at the module root: the first directory
// at or above the working directory that holds go.mod.
func TemplatePath() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			path := filepath.Join(dir, "template.yaml")
			if _, err := os.Stat(path); err != nil {
				return "", fmt.Errorf("module root %s has no template.yaml: %w", dir, err)
			}
			return path, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod at or above the working directory, so no template.yaml to create resources from")
		}
		dir = parent
	}
}

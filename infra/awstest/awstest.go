// Package awstest connects integration tests to the local AWS emulator
// through the real SDK configuration chain (AWS_ENDPOINT_URL and friends).
package awstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
)

// EnvFlag turns integration tests on; `make test` sets it after starting
// the emulator.
const EnvFlag = "WEIR_INTEGRATION"

// Config returns an SDK config for the emulator. Without WEIR_INTEGRATION=1
// the test is skipped; with it, an unreachable endpoint fails the test.
func Config(t testing.TB) aws.Config {
	t.Helper()
	if os.Getenv(EnvFlag) != "1" {
		t.Skipf("integration test: run `make test`, or start the emulator (make emulator-up) and set %s=1 and AWS_ENDPOINT_URL", EnvFlag)
	}
	endpoint := os.Getenv("AWS_ENDPOINT_URL")
	if endpoint == "" {
		t.Fatalf("%s=1 but AWS_ENDPOINT_URL is empty: point it at the emulator, e.g. http://127.0.0.1:4566", EnvFlag)
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatalf("AWS_ENDPOINT_URL %q is not a URL: %v", endpoint, err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		t.Fatalf("emulator at %s is not reachable (%v): start it with `make emulator-up`", endpoint, err)
	}
	_ = conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region()))
	if err != nil {
		t.Fatalf("load AWS config: %v", err)
	}
	return cfg
}

func region() string {
	if r := os.Getenv("AWS_REGION"); r != "" {
		return r
	}
	return "us-east-1"
}

// Name returns a resource name unique to this test run, so packages that
// run in parallel against one emulator never share tables or queues (tests
// must not reset the emulator: other packages are using it).
func Name(t testing.TB, base string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random name: %v", err)
	}
	clean := strings.NewReplacer("/", "-", " ", "-", "_", "-").Replace(strings.ToLower(base))
	if len(clean) > 40 {
		clean = clean[:40]
	}
	return clean + "-" + hex.EncodeToString(b)
}

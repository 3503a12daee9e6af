package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/dynamo"
	"github.com/weirstream/weir/infra/resources"
	"github.com/weirstream/weir/infra/resources/resourcestest"
)

// buildOnce builds the binary once per test run.
var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "weir-controller-test-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "weir-controller")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", errors.New("go build: " + err.Error() + "\n" + string(out))
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if bin, err := buildOnce(); err == nil {
		_ = os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

func binary(t *testing.T) string {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// controller is one running weir-controller process.
type controller struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error // set before done is closed
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// start runs the binary with the test's environment plus env. It is
// killed, with everything in its process group, when the test ends.
func start(t *testing.T, env map[string]string, args ...string) *controller {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &controller{t: t, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", strings.Join(args, " "), out.String())
		}
	})
	return c
}

// healthAddr waits for the start-up line and returns the health address.
func (c *controller) healthAddr() string {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(c.out.String()))
		for sc.Scan() {
			var line struct {
				Msg        string `json:"msg"`
				HealthAddr string `json:"health_addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "weir-controller starting" {
				return line.HealthAddr
			}
		}
		select {
		case <-c.done:
			c.t.Fatalf("weir-controller exited during start-up (%v):\n%s", c.err, c.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	c.t.Fatalf("weir-controller did not log its start within 20 s:\n%s", c.out.String())
	return ""
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// waitReady waits until /readyz answers 200 with a body holding want.
func waitReady(t *testing.T, addr, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var code int
	var body string
	for time.Now().Before(deadline) {
		if code, body = get(t, "http://"+addr+"/readyz"); code == http.StatusOK && strings.Contains(body, want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("/readyz answered %d %q, want 200 and %q within %s", code, body, want, within)
}

// sigterm signals the controller and returns how long it took to exit.
func (c *controller) sigterm() time.Duration {
	c.t.Helper()
	start := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		c.t.Fatal(err)
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.t.Fatal("weir-controller did not exit within 10 s of SIGTERM")
	}
	if c.err != nil {
		c.t.Fatalf("weir-controller exited with %v after SIGTERM, want 0", c.err)
	}
	took := time.Since(start)
	c.t.Logf("exited %s after SIGTERM", took)
	return took
}

// quickLease makes take-over fast enough for a test.
var quickLease = []string{"--lease-duration", "3s", "--lease-renew-interval", "500ms", "--lease-renew-deadline", "2s"}

func controllerArgs(owner string) []string {
	return append([]string{"--launcher", "external", "--lease-owner", owner, "--health-addr", "127.0.0.1:0", "--poll-interval", "200ms"}, quickLease...)
}

func TestControllerLeadsAndReleasesTheLeaseOnSIGTERM(t *testing.T) {
	cfg := awstest.Config(t)
	stack := resourcestest.ForTest(t, cfg)
	env := stack.Env()
	lease, err := dynamo.NewLease(dynamo.NewClient(cfg), dynamo.LeaseConfig{Table: env[resources.EnvLeaseTable], Name: "controller", Owner: "test-reader"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	a := start(t, env, controllerArgs("ctl-a")...)
	addr := a.healthAddr()
	if code, body := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	waitReady(t, addr, "leader", 10*time.Second)
	rec, err := lease.Record(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rec == nil || rec.Owner != "ctl-a" || rec.Released || rec.Fence < 1 {
		t.Fatalf("lease record %+v, want held by ctl-a", rec)
	}

	if took := a.sigterm(); took > time.Second {
		t.Errorf("weir-controller took %s to exit after SIGTERM, want at most 1 s", took)
	}
	rec, err = lease.Record(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rec == nil || rec.Owner != "ctl-a" || !rec.Released {
		t.Fatalf("lease record after SIGTERM %+v, want released by ctl-a", rec)
	}
	if !strings.Contains(a.out.String(), `"msg":"weir-controller stopped"`) {
		t.Errorf("no stop line in the log:\n%s", a.out.String())
	}
}

func TestAStandbyIsReadyAndTakesOverOnSIGTERM(t *testing.T) {
	cfg := awstest.Config(t)
	stack := resourcestest.ForTest(t, cfg)
	env := stack.Env()

	a := start(t, env, controllerArgs("ctl-a")...)
	addrA := a.healthAddr()
	waitReady(t, addrA, "leader", 10*time.Second)
	b := start(t, env, controllerArgs("ctl-b")...)
	addrB := b.healthAddr()
	waitReady(t, addrB, "standby", 10*time.Second)

	a.sigterm()
	// The standby re-reads the record every renew interval (500 ms) and
	// takes a released lease at once.
	waitReady(t, addrB, "leader", 1500*time.Millisecond)
	if took := b.sigterm(); took > time.Second {
		t.Errorf("weir-controller took %s to exit after SIGTERM, want at most 1 s", took)
	}
}

func TestBadSettingsStopStartUpBeforeAnyAWSCall(t *testing.T) {
	// Anything that connects here would be an AWS call.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			calls.Add(1)
			_ = conn.Close()
		}
	})
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), "--launcher", "ecs", "--poll-interval", "often")
	cmd.Env = []string{"AWS_ENDPOINT_URL=http://" + ln.Addr().String(), "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		resources.EnvJobsTable + "=jobs"}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitSettings {
		t.Fatalf("exit %v, want code %d:\n%s", err, exitSettings, out)
	}
	msg := string(out)
	for _, want := range []string{"WEIR_LEASE_TABLE, WEIR_WORKER_QUEUE_URL not set", "--ecs-cluster", `--poll-interval "often"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Count(msg, "weir-controller:") != 1 {
		t.Errorf("want one message:\n%s", msg)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d connections to the AWS endpoint before the settings were valid", n)
	}
}

package proctest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/proctest"
)

func TestBuildNamesBinariesAfterPackages(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(t.TempDir(), "hello")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() { println(\"hi\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "mod", "init", "example.com/hello")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go mod init: %v\n%s", err, out)
	}
	t.Chdir(src)
	bins, err := proctest.Build(dir, ".")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proctest.Build(dir); err == nil {
		t.Error("a build of no package did not fail")
	}
	if len(bins) != 1 || bins[0] != filepath.Join(dir, "hello") {
		t.Fatalf("binaries %v, want %s", bins, filepath.Join(dir, "hello"))
	}
	if out, err := exec.Command(bins[0]).CombinedOutput(); err != nil || !strings.Contains(string(out), "hi") {
		t.Fatalf("the built binary ran with %v and said %q", err, out)
	}
}

// A stopped process is killed with its group: Kill continues it first.
func TestKillEndsAStoppedProcessGroup(t *testing.T) {
	p, err := proctest.Start(exec.Command("sh", "-c", "echo started; sleep 60 & wait"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Out.String(), "started") {
		if time.Now().After(deadline) {
			t.Fatal("the process never wrote its output")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.Kill(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Kill did not end a stopped process")
	}
	if !p.Exited() || p.Err() == nil {
		t.Fatalf("exited %v with %v, want killed", p.Exited(), p.Err())
	}
	// Its child was in its group: no process of the group is left once
	// the child is reaped.
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(-p.Pid(), 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a process of the killed group is still alive")
		}
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("signalling a process that exited: %v", err)
	}
}

// Under the race detector a started command is told not to sleep at exit
// (the race runtime's default second), unless the caller chose GORACE.
func TestRaceBuiltCommandsExitAtOnce(t *testing.T) {
	race := slices.Contains(proctest.BuildFlags(), "-race")
	run := func(cmd *exec.Cmd) string {
		t.Helper()
		p, err := proctest.Start(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Err(); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(p.Out.String())
	}
	got := run(exec.Command("sh", "-c", `echo "$GORACE"`))
	if want := map[bool]string{true: "atexit_sleep_ms=0", false: os.Getenv("GORACE")}[race]; got != want {
		t.Errorf("GORACE=%q in the command, want %q (race detector on: %v)", got, want, race)
	}
	cmd := exec.Command("sh", "-c", `echo "$GORACE"`)
	cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1")
	if got := run(cmd); got != "halt_on_error=1" {
		t.Errorf("the caller's GORACE became %q", got)
	}
}

// Package scripts holds the test of scripts/run.sh, the script behind
// `make run`.
package scripts

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/internal/proctest"
)

// TestMakeRunHeadless runs scripts/run.sh without a terminal, on an
// emulator port of its own so that it starts and stops its own emulator,
// waits until the demo job is Running with at least two ready epochs,
// interrupts it as Ctrl-C would, and checks that everything it started
// has stopped: its own processes, the workers and the emulator.
func TestMakeRunHeadless(t *testing.T) {
	awstest.Config(t) // skips without WEIR_INTEGRATION=1
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	emulatorPort, apiPort, healthPort := freePort(t), freePort(t), freePort(t)
	runDir := t.TempDir()
	cmd := exec.Command(filepath.Join(root, "scripts", "run.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"EMULATOR_PORT="+strconv.Itoa(emulatorPort),
		"WEIR_API_PORT="+strconv.Itoa(apiPort),
		"WEIR_HEALTH_PORT="+strconv.Itoa(healthPort),
		"WEIR_RUN_DIR="+runDir,
		"WEIR_BIN_DIR="+filepath.Join(runDir, "bin"),
		"WEIR_STACK="+awstest.Name(t, "make-run"),
		// The bound: the script stops by itself if the test does not.
		"WEIR_RUN_FOR=4m",
	)
	var out proctest.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start scripts/run.sh: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			// A failed test still must not leave the script running.
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
			}
		}
		if t.Failed() {
			t.Logf("scripts/run.sh said:\n%s", out.String())
			logs, _ := filepath.Glob(filepath.Join(runDir, "logs", "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", filepath.Base(l), tail(string(b), 40))
			}
		}
	}()

	jobURL := fmt.Sprintf("http://127.0.0.1:%d/jobs/demo", apiPort)
	// Building, the emulator's start and the workers' start-up come first.
	deadline := time.Now().Add(3 * time.Minute)
	var last string
	for {
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("scripts/run.sh ended before the demo job was running (%v)", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo job did not reach Running with 2 ready epochs within 3 minutes; last seen: %s", last)
		}
		j, err := getJob(jobURL)
		if err == nil && j.Status != nil {
			ready := readyEpochs(j)
			last = fmt.Sprintf("%s with ready epochs %v", j.Status.State, ready)
			if j.Status.State == "Running" && len(ready) >= 2 {
				break
			}
		} else if err != nil {
			last = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}

	started := startedProcesses(t, runDir)
	if len(started) < 5 {
		t.Fatalf("the script recorded %d processes (%v), want the emulator, controller, API, scheduler stand-in and weirctl", len(started), started)
	}
	workers := workerPids(t, runDir)
	if len(workers) == 0 {
		t.Fatal("no worker pid files: the controller started no workers")
	}

	// Ctrl-C reaches the script; it stops everything in order.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 130 {
				t.Errorf("scripts/run.sh ended with %v after Ctrl-C, want exit 130", err)
			}
		}
	case <-time.After(60 * time.Second):
		t.Fatal("scripts/run.sh did not stop within 60 s of Ctrl-C")
	}

	for name, pid := range started {
		if running(pid) {
			t.Errorf("%s (pid %d) is still running after the script stopped", name, pid)
		}
	}
	for _, pid := range workers {
		if running(pid) {
			t.Errorf("worker pid %d is still running after the script stopped", pid)
		}
	}
	for _, p := range leftovers(runDir, emulatorPort) {
		t.Errorf("still running after the script stopped: %s", p)
	}
	for _, port := range []int{emulatorPort, apiPort, healthPort} {
		if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			_ = conn.Close()
			t.Errorf("something still listens on port %d", port)
		}
	}
	text := out.String()
	for _, want := range []string{"export WEIR_API_URL=http://127.0.0.1:" + strconv.Itoa(apiPort), "demo state=Running", "stopping what this run started"} {
		if !strings.Contains(text, want) {
			t.Errorf("the script's output lacks %q", want)
		}
	}
	if strings.Contains(text, "\x1b[") {
		t.Error("escape sequences in the output without a terminal")
	}
}

// job is what the test reads of GET /jobs/{id} (api/openapi.yaml).
type job struct {
	Status *struct {
		State string `json:"state"`
	} `json:"status"`
	Checkpoints []struct {
		Epoch int64  `json:"epoch"`
		State string `json:"state"`
	} `json:"checkpoints"`
}

func getJob(url string) (job, error) {
	hc := http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return job{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return job{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var j job
	return j, json.NewDecoder(resp.Body).Decode(&j)
}

// leftovers lists the live processes that run a binary the script built
// (the controller, API, scheduler stand-in, weirctl and every worker) or
// the emulator on its port, found by scanning /proc (Linux only).
func leftovers(runDir string, emulatorPort int) []string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	bin := filepath.Join(runDir, "bin") + string(filepath.Separator)
	port := strconv.Itoa(emulatorPort)
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !running(pid) {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		emulator := false
		for i, a := range args {
			if strings.HasSuffix(a, "moto_serial.py") {
				emulator = true
			}
			if emulator && a == "-p" && i+1 < len(args) && args[i+1] == port {
				out = append(out, fmt.Sprintf("pid %d, the emulator on port %s", pid, port))
			}
		}
		if strings.HasPrefix(exe, bin) {
			out = append(out, fmt.Sprintf("pid %d, %s", pid, strings.Join(args, " ")))
		}
	}
	return out
}

func readyEpochs(j job) []int64 {
	var out []int64
	for _, cp := range j.Checkpoints {
		if cp.State == "ready" {
			out = append(out, cp.Epoch)
		}
	}
	return out
}

// startedProcesses reads the script's list of what it started.
func startedProcesses(t *testing.T, runDir string) map[string]int {
	t.Helper()
	f, err := os.Open(filepath.Join(runDir, "pids"))
	if err != nil {
		t.Fatalf("the script's pid list: %v", err)
	}
	defer func() { _ = f.Close() }()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, pid, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil {
			t.Fatalf("pid list line %q is not NAME PID", sc.Text())
		}
		out[name] = n
	}
	return out
}

var pidField = regexp.MustCompile(`"pid":(\d+)`)

// workerPids reads the process launcher's pid files.
func workerPids(t *testing.T, runDir string) []int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(runDir, "workers", "*", "*.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // removed meanwhile: that worker was stopped
		}
		if m := pidField.FindSubmatch(b); m != nil {
			n, _ := strconv.Atoi(string(m[1]))
			out = append(out, n)
		}
	}
	return out
}

// running reports whether pid is a live process; a zombie is not, as a
// container's init may leave it unreaped.
func running(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // not Linux: the signal test is all there is
	}
	i := bytes.LastIndexByte(b, ')')
	fields := strings.Fields(string(b[i+1:]))
	return len(fields) == 0 || (fields[0] != "Z" && fields[0] != "X")
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

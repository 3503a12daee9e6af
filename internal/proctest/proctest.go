// Package proctest builds the project's commands and runs them as
// processes for tests and fault campaigns: each in a process group of its
// own, so a signal reaches the process and whatever it started, with its
// output kept for the caller to read while it runs.
package proctest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// BuildFlags are the go build flags that give the built commands the race
// detector when the caller runs with it, so a data race in a process the
// test started fails the test too.
func BuildFlags() []string {
	if raceEnabled {
		return []string{"-race"}
	}
	return nil
}

// Build builds the packages (import paths or paths relative to the
// working directory) into dir with BuildFlags and returns the binaries'
// paths, in the order of pkgs. Each binary is named after its package's
// last path element.
func Build(dir string, pkgs ...string) ([]string, error) {
	if len(pkgs) == 0 {
		return nil, errors.New("proctest: build: no package named")
	}
	args := append(append([]string{"build"}, BuildFlags()...), "-o", dir+string(filepath.Separator))
	out, err := exec.Command("go", append(args, pkgs...)...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("proctest: go build %v: %w\n%s", pkgs, err, out)
	}
	bins := make([]string, len(pkgs))
	for i, p := range pkgs {
		if p == "." || strings.HasPrefix(p, "./") || strings.HasPrefix(p, "../") {
			if abs, err := filepath.Abs(p); err == nil {
				p = abs
			}
		}
		bins[i] = filepath.Join(dir, filepath.Base(p))
	}
	return bins, nil
}

// Buffer is a bytes.Buffer that a process's output and its reader can use
// at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Bytes returns a copy of everything written so far.
func (b *Buffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.b.Bytes())
}

// Process is a command started in a process group of its own. One
// goroutine, ended by the process's exit, waits for it.
type Process struct {
	Cmd *exec.Cmd
	// Out holds what the process wrote to stdout and stderr, unless the
	// command had writers of its own.
	Out  *Buffer
	done chan struct{}
	err  error // set before done is closed
}

// Start starts cmd in a new process group. A command built with the race
// detector exits as soon as it is done (GORACE=atexit_sleep_ms=0, unless
// the caller set GORACE): the race runtime otherwise sleeps a second at
// exit, and a test would time that, not the program.
func Start(cmd *exec.Cmd) (*Process, error) {
	p := &Process{Cmd: cmd, Out: &Buffer{}, done: make(chan struct{})}
	if raceEnabled {
		env := cmd.Env
		if env == nil {
			env = os.Environ()
		}
		if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GORACE=") }) {
			cmd.Env = append(slices.Clip(env), "GORACE=atexit_sleep_ms=0")
		}
	}
	if cmd.Stdout == nil {
		cmd.Stdout = p.Out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = p.Out
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process's id, which is also its group's.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process ended (exec.Cmd.Wait's error); only once Done
// is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Signal sends sig to the process alone (not its group); a process that
// has exited is not an error.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := p.Cmd.Process.Signal(sig); err != nil && !errors.Is(err, syscall.ESRCH) && !p.Exited() {
		return fmt.Errorf("proctest: signal %s to pid %d: %w", sig, p.Pid(), err)
	}
	return nil
}

// Kill ends the process's group (SIGKILL, after a SIGCONT: a stopped
// process dies only once continued) and waits for the process. Processes
// it started in groups of their own are left alone.
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGCONT)
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.done
}

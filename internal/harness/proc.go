package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/natstest"
)

// Proc is a process a test starts, stops, kills and restarts, in a
// process group of its own. Its output (stdout and stderr) over all runs
// is kept. Set the exported fields before the first Start; the methods are
// safe for concurrent use.
type Proc struct {
	// Name names the process in logs.
	Name string
	// Path is the executable; Args its arguments; Dir its working
	// directory (empty: the test's).
	Path string
	Args []string
	Dir  string
	// Env is added to BaseEnv, or to os.Environ() when BaseEnv is nil.
	Env, BaseEnv []string
	// Ready is the text a run prints once it is ready (WaitReady).
	Ready string

	// mu guards the fields below.
	mu   sync.Mutex
	out  bytes.Buffer
	from int // offset in out where the current run's output starts
	cmd  *exec.Cmd
	done chan struct{} // closed when the current run has exited
	err  error         // the current run's exit error, once done is closed
	runs int
}

// Write appends to the process's output.
func (p *Proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Start starts a new run of the process. It does not wait for it to be
// ready (WaitReady). It returns exec's error when the process cannot start.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.runs++
	fmt.Fprintf(&p.out, "==== %s run %d at %s ====\n", p.Name, p.runs, time.Now().Format("15:04:05.000"))
	p.from = p.out.Len()
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Dir = p.Dir
	base := p.BaseEnv
	if base == nil {
		base = os.Environ()
	}
	cmd.Env = append(append([]string{}, base...), p.Env...)
	cmd.Stdout, cmd.Stderr = p, p
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// Runs counts the runs started.
func (p *Proc) Runs() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runs
}

// Running reports whether the current run has not exited.
func (p *Proc) Running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the current run: SIGKILL to its whole process
// group, any other signal to the process alone.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return errors.New("not started")
	}
	if sig == syscall.SIGKILL {
		return syscall.Kill(-p.cmd.Process.Pid, sig)
	}
	return p.cmd.Process.Signal(sig)
}

// Wait waits for the current run to exit and returns its exit error; ok
// is false when it is still running after timeout.
func (p *Proc) Wait(timeout time.Duration) (err error, ok bool) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return nil, true
	}
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.err, true
	case <-time.After(timeout):
		return nil, false
	}
}

// Kill sends SIGKILL to the process group and waits (at most timeout)
// until the run has exited; it returns an error when it has not. A
// process not running is left alone.
func (p *Proc) Kill(timeout time.Duration) error {
	if !p.Running() {
		return nil
	}
	_ = p.Signal(syscall.SIGKILL)
	if _, ok := p.Wait(timeout); !ok {
		return fmt.Errorf("%s did not die within %v of SIGKILL", p.Name, timeout)
	}
	return nil
}

// Stop sends SIGTERM and waits (at most timeout) for the run to exit. It
// returns the run's exit error (nil for a clean exit); ok is false when
// it is still running.
func (p *Proc) Stop(timeout time.Duration) (exit error, ok bool) {
	if !p.Running() {
		return p.Wait(0)
	}
	_ = p.Signal(syscall.SIGTERM)
	return p.Wait(timeout)
}

// Output returns everything the process wrote, over all its runs.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Current returns the current run's output.
func (p *Proc) Current() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.out.Bytes()[p.from:])
}

// WaitReady polls (at most total) until the current run has printed
// Ready, and fails the test if it exits first or never does.
func (p *Proc) WaitReady(tb testing.TB, total time.Duration) {
	tb.Helper()
	p.WaitOutput(tb, p.Ready, total)
}

// WaitOutput polls (at most total) until the current run has printed
// want, and fails the test if it exits first or never does.
func (p *Proc) WaitOutput(tb testing.TB, want string, total time.Duration) {
	tb.Helper()
	natstest.CheckFor(tb, total, 20*time.Millisecond, func() error {
		if !strings.Contains(p.Current(), want) {
			if !p.Running() {
				tb.Fatalf("%s exited before %q: %s", p.Name, want, Tail(p.Current(), 2000))
			}
			return fmt.Errorf("%s: no %q in its output yet", p.Name, want)
		}
		return nil
	})
}

// Start starts p for the rest of the test: it is killed when the test
// ends, and its output logged (the last 6000 bytes) when the test failed.
func Start(tb testing.TB, p *Proc) *Proc {
	tb.Helper()
	if err := p.Start(); err != nil {
		tb.Fatalf("start %s: %v", p.Name, err)
	}
	tb.Cleanup(func() {
		_ = p.Kill(30 * time.Second)
		if tb.Failed() {
			tb.Logf("%s output:\n%s", p.Name, Tail(p.Output(), 6000))
		}
	})
	return p
}

// ServiceEnv is the test's environment without herd's settings (HERD_*,
// but HERD_OLLAMA_BIN) or OLLAMA_HOST, so that a herd service started with
// it reads only the configuration the test gives it.
func ServiceEnv() []string {
	env := []string{}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "OLLAMA_HOST=") || (strings.HasPrefix(kv, "HERD_") && !strings.HasPrefix(kv, "HERD_OLLAMA_BIN=")) {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Tail returns the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

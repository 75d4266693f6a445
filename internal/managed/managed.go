package managed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ollama/ollama/api"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/backoff"
	"github.com/sutazai/herd/internal/testmodel"
)

const (
	// readyTimeout bounds how long a started server may take to answer.
	readyTimeout = 60 * time.Second
	// readyPoll is how often readiness is checked.
	readyPoll = 50 * time.Millisecond
	// stopGrace is how long a server may take to exit after SIGTERM.
	stopGrace = 5 * time.Second
	// stableAfter is how long a server must have run for the restart
	// backoff to start again from Config.RestartBackoff.
	stableAfter = 30 * time.Second
)

// Instance is a running, supervised `ollama serve`. Its methods are safe
// for concurrent use.
type Instance struct {
	log     *zap.Logger
	cfg     Config
	bin     string
	dir     string
	host    string // host:port given to OLLAMA_HOST, fixed for the life of the instance
	url     string
	env     []string
	logPath string
	logFile *os.File // closed by the supervisor when it ends
	probe   *http.Client

	mu       sync.Mutex // guards proc and restarts
	proc     *process   // the current server process; nil after stop
	restarts int

	done chan struct{} // closed when the supervisor has stopped the server
}

// process is one run of `ollama serve`.
type process struct {
	cmd     *exec.Cmd
	pid     int
	started time.Time
	exited  chan struct{} // closed when the process has been reaped
	err     error         // cmd.Wait's result, valid once exited is closed
}

// Start starts `ollama serve` as configured, waits until it answers (at
// most 60s), imports the configured test models it lacks, and returns
// once the server is ready. The server is supervised until ctx ends: if it
// exits it is restarted on the same URL; when ctx ends it is stopped (see
// Wait). log may be nil.
//
// Errors: the result of cfg.Validate, ErrNoBinary, ErrPinning, ErrExited
// and ErrNotReady (carrying the tail of the server's log), ErrImport, or
// ctx's error. On error nothing is left running.
func Start(ctx context.Context, cfg Config, log *zap.Logger) (*Instance, error) {
	if log == nil {
		log = zap.NewNop()
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	bin := cfg.Binary
	var err error
	if bin == "" {
		bin, err = FindBinary()
	} else {
		bin, err = checkBinary(bin)
	}
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("managed: dir: %w", err)
	}
	for _, sub := range []string{"home", "models", "gen"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("managed: %w", err)
		}
	}
	host, base, err := resolveListen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	i := &Instance{
		log:     log.Named("managed").With(zap.String("url", base)),
		cfg:     cfg,
		bin:     bin,
		dir:     dir,
		host:    host,
		url:     base,
		logPath: filepath.Join(dir, "ollama.log"),
		probe:   &http.Client{Timeout: time.Second},
		done:    make(chan struct{}),
	}
	i.env = i.environ()
	if i.logFile, err = openLog(i.logPath); err != nil {
		return nil, fmt.Errorf("managed: log: %w", err)
	}

	begin := time.Now()
	p, err := i.spawn()
	if err == nil {
		err = i.waitReady(ctx, p)
		if err != nil {
			i.kill(p)
		}
	}
	if err != nil {
		i.logFile.Close()
		return nil, err
	}
	i.log.Info("ollama serve ready", zap.Int("pid", p.pid), zap.Duration("took", time.Since(begin)),
		zap.Ints("cpus", cfg.CPUs), zap.String("log", i.logPath))

	if err := i.importModels(ctx); err != nil {
		i.kill(p)
		i.logFile.Close()
		return nil, err
	}
	go i.supervise(ctx)
	return i, nil
}

// URL returns the server's base URL, e.g. http://127.0.0.1:41234. It stays
// the same across restarts.
func (i *Instance) URL() string { return i.url }

// PID returns the process id of the current `ollama serve` (it changes on
// restart), or 0 when none is running.
func (i *Instance) PID() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.proc == nil {
		return 0
	}
	return i.proc.pid
}

// Restarts returns how many times the server has been started again after
// it exited.
func (i *Instance) Restarts() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.restarts
}

// Kill sends SIGKILL to the server's process group, as a crash would; the
// supervisor then restarts it. It does not wait. It returns ErrNotRunning
// when no server process is running.
func (i *Instance) Kill() error {
	i.mu.Lock()
	p := i.proc
	i.mu.Unlock()
	if p == nil || p.hasExited() {
		return ErrNotRunning
	}
	if err := syscall.Kill(-p.pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("managed: kill: %w", err)
	}
	return nil
}

// Wait blocks until the context given to Start has ended and the server
// and its runners have been stopped. It returns nil.
func (i *Instance) Wait() error {
	<-i.done
	return nil
}

// resolveListen picks the port when listen asks for any (port 0) and
// returns the host:port for OLLAMA_HOST and the URL clients use.
func resolveListen(listen string) (hostPort, base string, err error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", "", fmt.Errorf("managed: listen %q: %w", listen, err)
	}
	if port == "0" || port == "" {
		l, err := net.Listen("tcp", listen)
		if err != nil {
			return "", "", fmt.Errorf("managed: choosing a port: %w", err)
		}
		port = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
	dial := host
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		dial = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), "http://" + net.JoinHostPort(dial, port), nil
}

// environ is the server's (and `ollama create`'s) environment: this
// process's, without HOME and OLLAMA_* settings, plus the instance's own.
func (i *Instance) environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OLLAMA_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"HOME="+filepath.Join(i.dir, "home"),
		"OLLAMA_MODELS="+filepath.Join(i.dir, "models"),
		"OLLAMA_HOST="+i.host,
		"OLLAMA_NUM_PARALLEL="+strconv.Itoa(i.cfg.NumParallel),
		"OLLAMA_KEEP_ALIVE="+i.cfg.KeepAlive.String(),
	)
	// OLLAMA_MAX_QUEUE=0 would mean a queue of zero, not Ollama's default.
	if i.cfg.MaxQueue > 0 {
		env = append(env, "OLLAMA_MAX_QUEUE="+strconv.Itoa(i.cfg.MaxQueue))
	}
	return env
}

// spawn starts a server process in its own process group and makes it the
// current one. A process that is not the instance's first counts as a
// restart.
func (i *Instance) spawn() (*process, error) {
	cmd := exec.Command(i.bin, "serve")
	cmd.Env = i.env
	cmd.Stdout, cmd.Stderr = i.logFile, i.logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := startPinned(cmd, i.cfg.CPUs); err != nil {
		if errors.Is(err, ErrPinning) {
			return nil, err
		}
		return nil, fmt.Errorf("managed: starting %s serve: %w", i.bin, err)
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, started: time.Now(), exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	i.mu.Lock()
	if i.proc != nil {
		i.restarts++
	}
	i.proc = p
	i.mu.Unlock()
	return p, nil
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// waitReady polls GET / until the server answers 200, it exits, ctx ends
// or readyTimeout passes.
func (i *Instance) waitReady(ctx context.Context, p *process) error {
	timeout := time.NewTimer(readyTimeout)
	defer timeout.Stop()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		if i.answers(ctx) {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%w (pid %d: %v); last lines of %s:\n%s", ErrExited, p.pid, p.err, i.logPath, tail(i.logPath))
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			return fmt.Errorf("%w within %v; last lines of %s:\n%s", ErrNotReady, readyTimeout, i.logPath, tail(i.logPath))
		case <-tick.C:
		}
	}
}

// answers reports whether GET / answers 200.
func (i *Instance) answers(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, i.url+"/", nil)
	if err != nil {
		return false
	}
	resp, err := i.probe.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// importModels creates the configured test models the server lacks, with
// `ollama create` as documented for GGUF files.
func (i *Instance) importModels(ctx context.Context) error {
	if len(i.cfg.TestModels) == 0 {
		return nil
	}
	base, err := url.Parse(i.url)
	if err != nil {
		return err
	}
	list, err := api.NewClient(base, http.DefaultClient).List(ctx)
	if err != nil {
		return fmt.Errorf("%w: listing models: %w", ErrImport, err)
	}
	have := make(map[string]bool)
	for _, m := range list.Models {
		have[strings.TrimSuffix(m.Name, ":latest")] = true
	}
	for _, name := range i.cfg.TestModels {
		if have[name] {
			continue
		}
		begin := time.Now()
		dir := filepath.Join(i.dir, "gen", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("%w %s: %w", ErrImport, name, err)
		}
		modelfile, err := testmodel.WriteDir(dir, testModels[name])
		if err != nil {
			return fmt.Errorf("%w %s: %w", ErrImport, name, err)
		}
		cmd := exec.CommandContext(ctx, i.bin, "create", name, "-f", modelfile)
		cmd.Env = i.env
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			if len(out) > tailBytes {
				out = out[len(out)-tailBytes:]
			}
			return fmt.Errorf("%w %s: ollama create: %w\n%s", ErrImport, name, err, out)
		}
		i.log.Info("imported model", zap.String("model", name), zap.Duration("took", time.Since(begin)))
	}
	return nil
}

// supervise restarts the server whenever it exits while ctx is live, and
// stops it when ctx ends.
func (i *Instance) supervise(ctx context.Context) {
	defer close(i.done)
	defer i.logFile.Close()
	wait := i.cfg.RestartBackoff // doubles per failed restart; slept with jitter
	for {
		i.mu.Lock()
		p := i.proc
		i.mu.Unlock()
		select {
		case <-ctx.Done():
			i.stop(p)
			return
		case <-p.exited:
		}
		if ctx.Err() != nil {
			i.stop(p)
			return
		}
		// Runners may outlive a server that crashed alone.
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		uptime := time.Since(p.started)
		if uptime >= stableAfter {
			wait = i.cfg.RestartBackoff
		}
		i.log.Warn("ollama serve exited; restarting",
			zap.Int("pid", p.pid), zap.NamedError("exit", p.err), zap.Duration("uptime", uptime),
			zap.Duration("backoff", wait), zap.String("log_tail", tail(i.logPath)))
		for {
			select {
			case <-ctx.Done():
				i.mu.Lock()
				i.proc = nil
				i.mu.Unlock()
				return
			case <-time.After(backoff.Jitter(wait)):
			}
			wait = min(2*wait, maxRestartBackoff)
			fmt.Fprintf(i.logFile, "--- herd: restarting ollama serve (restart %d) ---\n", i.Restarts()+1)
			begin := time.Now()
			np, err := i.spawn()
			if err == nil {
				if err = i.waitReady(ctx, np); err != nil {
					i.kill(np)
				}
			}
			if err == nil {
				i.log.Info("ollama serve restarted", zap.Int("pid", np.pid), zap.Duration("took", time.Since(begin)))
				break
			}
			if ctx.Err() != nil {
				i.mu.Lock()
				i.proc = nil
				i.mu.Unlock()
				return
			}
			i.log.Error("restarting ollama serve failed", zap.Error(err), zap.Duration("next_backoff", wait))
		}
	}
}

// stop ends p gracefully: SIGTERM to its group, SIGKILL after stopGrace,
// then SIGKILL to whatever is left of the group (runners).
func (i *Instance) stop(p *process) {
	begin := time.Now()
	if !p.hasExited() {
		_ = syscall.Kill(-p.pid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(stopGrace):
			i.log.Warn("ollama serve ignored SIGTERM; killing it", zap.Int("pid", p.pid))
		}
	}
	i.kill(p)
	i.mu.Lock()
	i.proc = nil
	i.mu.Unlock()
	i.log.Info("ollama serve stopped", zap.Int("pid", p.pid), zap.Duration("took", time.Since(begin)))
}

// kill sends SIGKILL to p's process group and waits until p is reaped.
func (i *Instance) kill(p *process) {
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	<-p.exited
}

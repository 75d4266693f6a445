package herd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/internal/testbin"
	"github.com/sutazai/herd/internal/wire"
)

// composePasswords are the variables compose.yaml requires: one password
// for each user of deploy/nats/auth.conf.
var composePasswords = []string{
	"NATS_PASSWORD_SYS", "NATS_PASSWORD_DISPATCHER", "NATS_PASSWORD_WORKER",
	"NATS_PASSWORD_OPTIMIZER", "NATS_PASSWORD_OPERATOR", "NATS_PASSWORD_ADMIN",
	"NATS_PASSWORD_GATEWAY",
	"NATS_PASSWORD_ALICE", "NATS_PASSWORD_BOB",
}

// loadCompose loads compose.yaml with the Compose specification's own loader
// (what `docker compose config` runs), with the passwords it requires set.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	for _, v := range composePasswords {
		t.Setenv(v, "pw-"+strings.ToLower(v))
	}
	if _, err := os.Stat("compose.yaml"); err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"}, cli.WithOsEnv, cli.WithName("herd"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml is not valid: %v", err)
	}
	return p
}

// TestComposeValid checks that compose.yaml loads, so a broken file fails
// here rather than on a user's machine, and that it runs the whole stack.
func TestComposeValid(t *testing.T) {
	p := loadCompose(t)
	names := p.ServiceNames()
	for _, want := range []string{"nats", "ollama", "dispatcher", "worker", "optimizer", "prometheus", "grafana"} {
		if !slices.Contains(names, want) {
			t.Errorf("compose.yaml has no %s service (has %v)", want, names)
		}
	}
}

// TestComposeServices checks what the herd services and the monitoring
// services need from each other: each herd service serves /metrics on
// :8080, and every file Prometheus and Grafana mount exists in the repo.
func TestComposeServices(t *testing.T) {
	p := loadCompose(t)
	for _, name := range []string{"dispatcher", "worker", "optimizer"} {
		t.Run(name, func(t *testing.T) {
			s, err := p.GetService(name)
			if err != nil {
				t.Fatal(err)
			}
			if want := "/usr/local/bin/" + name; len(s.Entrypoint) != 1 || s.Entrypoint[0] != want {
				t.Errorf("entrypoint = %v, want [%s]", s.Entrypoint, want)
			}
			if i := slices.Index(s.Command, "--http"); i < 0 || i+1 >= len(s.Command) || s.Command[i+1] != "0.0.0.0:8080" {
				t.Errorf("command %v does not serve --http 0.0.0.0:8080 (Prometheus scrapes %s:8080)", s.Command, name)
			}
			if i := slices.Index(s.Command, "--nats"); i < 0 || i+1 >= len(s.Command) || s.Command[i+1] != "nats://nats:4222" {
				t.Errorf("command %v does not use --nats nats://nats:4222", s.Command)
			}
		})
	}
	for _, name := range []string{"prometheus", "grafana"} {
		t.Run(name, func(t *testing.T) {
			s, err := p.GetService(name)
			if err != nil {
				t.Fatal(err)
			}
			if s.Image == "" {
				t.Error("no image")
			}
			binds := 0
			for _, v := range s.Volumes {
				if v.Type != types.VolumeTypeBind {
					continue
				}
				binds++
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("mounts %s, which does not exist: %v", v.Source, err)
				}
			}
			if binds == 0 {
				t.Error("mounts nothing from deploy/")
			}
		})
	}
	g, err := p.GetService("grafana")
	if err != nil {
		t.Fatal(err)
	}
	if v := g.Environment["GF_AUTH_ANONYMOUS_ENABLED"]; v == nil || *v != "true" {
		t.Error("grafana: anonymous access is not enabled (GF_AUTH_ANONYMOUS_ENABLED)")
	}
	if v := g.Environment["GF_AUTH_ANONYMOUS_ORG_ROLE"]; v == nil || *v != "Viewer" {
		t.Error("grafana: anonymous users are not Viewers (GF_AUTH_ANONYMOUS_ORG_ROLE)")
	}
	// The dashboard must land in the directory the file provider reads.
	dir := dashboardProviderPath(t)
	found := false
	for _, v := range g.Volumes {
		if v.Type == types.VolumeTypeBind && filepath.Base(v.Source) == "herd-dashboard.json" && filepath.Dir(v.Target) == dir {
			found = true
		}
	}
	if !found {
		t.Errorf("grafana does not mount herd-dashboard.json into %s, the dashboard provider's path", dir)
	}
}

// TestComposeAuth checks the stack's access control: NATS loads the
// shipped deploy/nats/auth.conf (included from its configuration file) with
// every password variable it references given; each herd service logs in as
// its own role with its own password; and without the passwords the stack
// refuses to start.
func TestComposeAuth(t *testing.T) {
	p := loadCompose(t)
	n, err := p.GetService("nats")
	if err != nil {
		t.Fatal(err)
	}
	mounted := false
	for _, v := range n.Volumes {
		if v.Type == types.VolumeTypeBind && filepath.Base(v.Source) == "auth.conf" &&
			filepath.Base(filepath.Dir(v.Source)) == "nats" && filepath.Base(v.Target) == "auth.conf" {
			mounted = true
		}
	}
	if !mounted {
		t.Fatal("nats does not mount deploy/nats/auth.conf")
	}
	opts := natsOptions(t, p, t.TempDir())
	users := map[string]string{}
	for _, u := range opts.Users {
		if u.Account != nil {
			users[u.Username] = u.Account.Name
		}
	}
	for user, acc := range map[string]string{"dispatcher": "HERD", "worker": "HERD", "optimizer": "HERD", "alice": "AGENTS", "operator": "OPS"} {
		if users[user] != acc {
			t.Errorf("nats: user %s is in account %q, want %s (auth.conf not loaded?)", user, users[user], acc)
		}
	}
	conf, err := os.ReadFile("deploy/nats/auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`\$(NATS_PASSWORD_[A-Z0-9_]+)`).FindAllStringSubmatch(string(conf), -1) {
		if v := n.Environment[m[1]]; v == nil || *v == "" {
			t.Errorf("nats is not given %s, which auth.conf references", m[1])
		}
		if !slices.Contains(composePasswords, m[1]) {
			t.Errorf("compose.yaml does not require %s", m[1])
		}
	}
	for _, name := range []string{"dispatcher", "worker", "optimizer"} {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatal(err)
		}
		user, pw := s.Environment["HERD_NATS__USER"], s.Environment["HERD_NATS__PASSWORD"]
		want := "pw-nats_password_" + name
		if user == nil || *user != name || pw == nil || *pw != want {
			t.Errorf("%s logs in as %v with %v, want user %s with NATS_PASSWORD_%s", name, user, pw, name, strings.ToUpper(name))
		}
	}
	// Without a password the stack does not start.
	t.Setenv("NATS_PASSWORD_WORKER", "")
	po, err := cli.NewProjectOptions([]string{"compose.yaml"}, cli.WithOsEnv, cli.WithName("herd"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := po.LoadProject(context.Background()); err == nil || !strings.Contains(err.Error(), "NATS_PASSWORD_WORKER") {
		t.Fatalf("compose.yaml loads without NATS_PASSWORD_WORKER: %v", err)
	}
}

// composeImage is what an image compose.yaml names holds, as far as the
// stack uses it: its ENTRYPOINT, CMD and ENV, the executables in it (what a
// healthcheck may call), and which of them the tests can run from a local
// build. The tests read compose.yaml against this table, so a healthcheck
// calling a program its image does not have, or an image not listed here,
// fails them. herd's own image is read from the Dockerfile (herdImage).
type composeImage struct {
	// about says what the image is built from and holds.
	about      string
	entrypoint []string
	cmd        []string
	env        map[string]string
	// files are the executables the tests run for the image, by path in
	// the image: "tool:NAME" is bin/NAME (make tools), "build:NAME" herd's
	// command NAME built by the test, "repo:PATH" a file of this repository.
	files map[string]string
	// path is the image's PATH, where a command without a slash is found.
	path []string
	// has names the other executables in the image, which the tests cannot
	// run (wget is run as an HTTP GET by healthcheckEquivalents).
	has []string
	// entrypointScript is what the image's entrypoint script does with its
	// arguments, for an entrypoint that is a script (nil otherwise).
	entrypointScript func(args []string) []string
	// listen returns the flags the test adds to the command line so that
	// the program listens on the local ports (port maps a container port);
	// nil when the command line's own addresses are rewritten instead.
	listen func(t *testing.T, args []string, port func(int) int, root string) []string
}

// composeImages are the images compose.yaml may use.
var composeImages = map[string]composeImage{
	"nats:2.15.2-alpine": {
		about: "nats' Alpine variant: /usr/local/bin/nats-server and BusyBox (sh, wget, nc); " +
			"its entrypoint script runs nats-server with the arguments when the first one is a flag",
		entrypoint: []string{"docker-entrypoint.sh"},
		cmd:        []string{"nats-server", "--config", "/etc/nats/nats-server.conf"},
		files:      map[string]string{"/usr/local/bin/nats-server": "tool:nats-server"},
		path:       []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"},
		has:        []string{"docker-entrypoint.sh", "sh", "wget", "nc"},
		entrypointScript: func(args []string) []string {
			if len(args) == 0 || strings.HasPrefix(args[0], "-") {
				return append([]string{"nats-server"}, args...)
			}
			return args
		},
		listen: natsListen,
	},
	"nats:2.15.2": {
		about: "nats' scratch variant: /nats-server and /nats-server.conf and nothing else, no shell and no " +
			"HTTP client, and nats-server has no health probe of its own: no healthcheck can run in it",
		entrypoint: []string{"/nats-server"},
		cmd:        []string{"--config", "nats-server.conf"},
		files:      map[string]string{"/nats-server": "tool:nats-server"},
		listen:     natsListen,
	},
	"ollama/ollama:0.6.5": {
		about: "Ubuntu with /bin/ollama (and its runner libraries); sh and bash, but no curl or wget: " +
			"a healthcheck asks the server with `ollama list`",
		entrypoint: []string{"/bin/ollama"},
		cmd:        []string{"serve"},
		env:        map[string]string{"HOME": "/root", "OLLAMA_HOST": "0.0.0.0:11434"},
		files:      map[string]string{"/bin/ollama": "tool:ollama"},
		path:       []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"},
		has:        []string{"sh", "bash"},
	},
	"natsio/prometheus-nats-exporter:0.17.3": {
		about: "scratch with /prometheus-nats-exporter only (no shell, no HTTP client); " +
			"not run here: no local build (not on the Go module proxy)",
		entrypoint: []string{"/prometheus-nats-exporter"},
		cmd:        []string{"--help"},
		has:        []string{"/prometheus-nats-exporter"},
	},
	"prom/prometheus:v3.5.0": {
		about:      "BusyBox with /bin/prometheus and /bin/promtool; not run here (its configuration is checked by promtool in deploy_test.go)",
		entrypoint: []string{"/bin/prometheus"},
		cmd:        []string{"--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"},
		path:       []string{"/bin", "/usr/bin"},
		has:        []string{"/bin/prometheus", "/bin/promtool", "sh", "wget"},
	},
	"grafana/grafana:11.6.0": {
		about:      "Alpine with /usr/share/grafana/bin/grafana and BusyBox; not run here (no local build)",
		entrypoint: []string{"/run.sh"},
		path:       []string{"/usr/share/grafana/bin", "/usr/local/bin", "/usr/bin", "/bin"},
		has:        []string{"/run.sh", "grafana", "sh", "wget"},
	},
}

// herdImage reads herd's image (build: .) from the Dockerfile's last stage:
// its ENTRYPOINT and the files it copies in (the commands built in the
// first stage into /out/, and files of this repository).
func herdImage(t *testing.T) composeImage {
	t.Helper()
	raw, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stages := strings.Split(string(raw), "\nFROM ")
	last := stages[len(stages)-1]
	img := composeImage{
		about: "herd's image (Dockerfile): distroless/static with herd's commands and config/herd.yaml; no shell",
		files: map[string]string{},
		path:  []string{"/usr/local/bin"},
	}
	cmds, err := filepath.Glob("cmd/*/main.go")
	if err != nil || len(cmds) == 0 {
		t.Fatalf("no commands under cmd/: %v", err)
	}
	for _, line := range strings.Split(last, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "ENTRYPOINT":
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "ENTRYPOINT")), &img.entrypoint); err != nil {
				t.Fatalf("Dockerfile: %s: %v", line, err)
			}
		case f[0] == "COPY" && len(f) == 4 && f[1] == "--from=build" && f[2] == "/out/":
			for _, c := range cmds {
				name := filepath.Base(filepath.Dir(c))
				img.files[path.Join(f[3], name)] = "build:" + name
			}
		case f[0] == "COPY" && len(f) == 3:
			img.files[f[2]] = "repo:" + f[1]
		case f[0] == "COPY":
			t.Fatalf("Dockerfile: %q: the test does not know what it copies", line)
		}
	}
	if len(img.entrypoint) == 0 || len(img.files) == 0 {
		t.Fatal("Dockerfile: no ENTRYPOINT or no COPY in the last stage")
	}
	return img
}

// imageOf returns the image service s runs.
func imageOf(t *testing.T, s types.ServiceConfig) composeImage {
	t.Helper()
	if s.Build != nil {
		if filepath.Clean(s.Build.Context) != filepath.Clean(must(filepath.Abs("."))) ||
			(s.Build.Dockerfile != "" && s.Build.Dockerfile != "Dockerfile") {
			t.Fatalf("%s builds %s %s, the tests know only the Dockerfile here", s.Name, s.Build.Context, s.Build.Dockerfile)
		}
		return herdImage(t)
	}
	img, ok := composeImages[s.Image]
	if !ok {
		t.Fatalf("%s: image %s is not in composeImages: add what it holds (entrypoint, executables)", s.Name, s.Image)
	}
	return img
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// commandLine returns what the container of s runs, as Docker starts it:
// the service's entrypoint or the image's, then its command or (when it
// sets no entrypoint) the image's CMD; through the image's entrypoint
// script when it has one.
func commandLine(s types.ServiceConfig, img composeImage) []string {
	ep, cmd := img.entrypoint, img.cmd
	if s.Entrypoint != nil {
		ep, cmd = s.Entrypoint, nil // an entrypoint given in compose clears the image's CMD
	}
	if s.Command != nil {
		cmd = s.Command
	}
	args := append(slices.Clone([]string(ep)), cmd...)
	if img.entrypointScript != nil && s.Entrypoint == nil {
		args = img.entrypointScript(args[1:])
	}
	return args
}

// lookPath returns the image path of the executable name, or "" when the
// image has none.
func (img composeImage) lookPath(name string) string {
	if strings.Contains(name, "/") {
		if _, ok := img.files[name]; ok || slices.Contains(img.has, name) {
			return name
		}
		return ""
	}
	for _, dir := range img.path {
		if p := path.Join(dir, name); img.files[p] != "" || slices.Contains(img.has, p) {
			return p
		}
	}
	if slices.Contains(img.has, name) {
		return name
	}
	return ""
}

// containerRoot lays out the file system of one container of s under a
// new directory: each mount and each file the tests run for its image as a
// symbolic link at its path (mounts first: they hide the image's files),
// named volumes as directories of volumes shared between services. Paths
// the container uses are then the root plus the path. local resolves a
// files entry of the image ("tool:...") to a local path; nil links only
// the mounts.
func containerRoot(t *testing.T, s types.ServiceConfig, img composeImage, volumes map[string]string, local func(string) string) string {
	t.Helper()
	root := t.TempDir()
	link := func(target, source string) {
		p := filepath.Join(root, target)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(p); err == nil {
			return
		}
		if err := os.Symlink(source, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range s.Volumes {
		switch v.Type {
		case types.VolumeTypeBind:
			if _, err := os.Stat(v.Source); err != nil {
				t.Fatalf("%s mounts %s: %v", s.Name, v.Source, err)
			}
			link(v.Target, v.Source)
		case types.VolumeTypeVolume:
			dir, ok := volumes[v.Source]
			if !ok {
				dir = filepath.Join(volumes[""], v.Source)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				volumes[v.Source] = dir
			}
			link(v.Target, dir)
		default:
			t.Fatalf("%s: volume type %s is not supported by the tests", s.Name, v.Type)
		}
	}
	if local != nil {
		for target, what := range img.files {
			link(target, local(what))
		}
	}
	return root
}

// natsOptions returns the options nats-server starts with in the nats
// service: its command line parsed by nats-server's own flag parsing,
// which loads the configuration file (with its includes) from the mounted
// files. A flag nats-server does not know or a file that does not load
// fails the test.
func natsOptions(t *testing.T, p *types.Project, tmp string) *server.Options {
	t.Helper()
	s, err := p.GetService("nats")
	if err != nil {
		t.Fatal(err)
	}
	img := imageOf(t, s)
	args := commandLine(s, img)
	if exe := img.lookPath(args[0]); img.files[exe] != "tool:nats-server" {
		t.Fatalf("nats runs %q, which is not nats-server in %s", args[0], s.Image)
	}
	root := containerRoot(t, s, img, map[string]string{"": tmp}, nil)
	for i, a := range args {
		args[i] = mapPath(a, root)
	}
	fs := flag.NewFlagSet("nats-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	noop := func() {}
	opts, err := server.ConfigureOptions(fs, args[1:], noop, noop, noop)
	if err != nil {
		t.Fatalf("nats-server %s: %v", strings.Join(args[1:], " "), err)
	}
	return opts
}

// mapPath returns a container path in a (a whole argument, or the value
// after "=") as the same path under root.
func mapPath(a, root string) string {
	if strings.HasPrefix(a, "/") {
		return filepath.Join(root, a)
	}
	if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(v, "/") {
		return k + "=" + filepath.Join(root, v)
	}
	return a
}

// TestComposeDefaults checks compose.yaml's deployment defaults: NATS
// fsyncs every JetStream write and takes herd's batches; nothing is
// published beyond 127.0.0.1 and Ollama not at all; Prometheus cannot be
// shut down or reloaded over HTTP; workers scale (no host port, every
// replica scraped); images are the versions herd tests; and every
// healthcheck calls a program its image has.
func TestComposeDefaults(t *testing.T) {
	p := loadCompose(t)
	t.Run("nats", func(t *testing.T) {
		opts := natsOptions(t, p, t.TempDir())
		if !opts.JetStream {
			t.Error("nats: JetStream is not enabled")
		}
		if !opts.SyncAlways {
			t.Error("nats: JetStream does not fsync every write (jetstream { sync_interval: always })")
		}
		if opts.MaxPayload < 8<<20 {
			t.Errorf("nats: max_payload %d (0: the default 1MB), herd's batches need 8MB", opts.MaxPayload)
		}
		s, _ := p.GetService("nats")
		onVolume := false
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeVolume && strings.HasSuffix(opts.StoreDir, filepath.FromSlash(v.Target)) {
				onVolume = true
			}
		}
		if !onVolume {
			t.Errorf("nats: JetStream's store_dir %s is not on a named volume", opts.StoreDir)
		}
	})
	t.Run("ports", func(t *testing.T) {
		for _, s := range p.Services {
			for _, port := range s.Ports {
				if port.HostIP != "127.0.0.1" {
					t.Errorf("%s publishes %s:%s->%d: publish on 127.0.0.1 only", s.Name, port.HostIP, port.Published, port.Target)
				}
			}
			if (s.Name == "ollama" || s.Name == "worker") && len(s.Ports) > 0 {
				t.Errorf("%s is published (%v): Ollama has no access control, and a worker's host port stops --scale worker=N", s.Name, s.Ports)
			}
			if s.ContainerName != "" {
				t.Errorf("%s has container_name %s: it cannot be scaled", s.Name, s.ContainerName)
			}
		}
	})
	t.Run("prometheus", func(t *testing.T) {
		s, err := p.GetService("prometheus")
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range commandLine(s, imageOf(t, s)) {
			if a == "--web.enable-lifecycle" || strings.HasPrefix(a, "--web.enable-lifecycle=") || a == "--web.enable-admin-api" {
				t.Errorf("prometheus runs with %s: anyone reaching it could shut it down or delete data", a)
			}
		}
	})
	t.Run("scrape", func(t *testing.T) {
		var f struct {
			ScrapeConfigs []struct {
				JobName       string `yaml:"job_name"`
				StaticConfigs []struct {
					Targets []string `yaml:"targets"`
				} `yaml:"static_configs"`
				DNSSDConfigs []struct {
					Names []string `yaml:"names"`
					Type  string   `yaml:"type"`
					Port  int      `yaml:"port"`
				} `yaml:"dns_sd_configs"`
			} `yaml:"scrape_configs"`
		}
		decodeYAML(t, promConfigFile, &f, false)
		workers, exporter := false, ""
		for _, sc := range f.ScrapeConfigs {
			for _, d := range sc.DNSSDConfigs {
				if slices.Equal(d.Names, []string{"worker"}) && d.Type == "A" && d.Port == 8080 {
					workers = true
				}
			}
			for _, st := range sc.StaticConfigs {
				for _, tg := range st.Targets {
					if tg == "worker:8080" {
						t.Errorf("job %s scrapes worker:8080, which is one replica of --scale worker=N", sc.JobName)
					}
					if strings.HasPrefix(tg, "nats-exporter:") {
						exporter = tg
					}
				}
			}
		}
		if !workers {
			t.Error("prometheus does not find the workers by DNS (dns_sd_configs: names [worker], type A, port 8080)")
		}
		s, err := p.GetService("nats-exporter")
		if err != nil {
			t.Fatal(err)
		}
		if exporter == "" {
			t.Error("prometheus does not scrape nats-exporter")
		}
		args := commandLine(s, imageOf(t, s))
		if !slices.Contains(args, "http://nats:8222") || !slices.Contains(args, "-port="+strings.TrimPrefix(exporter, "nats-exporter:")) {
			t.Errorf("nats-exporter runs %v: want it to read http://nats:8222 and serve %s", args, exporter)
		}
	})
	t.Run("images", func(t *testing.T) {
		mod, err := os.ReadFile("go.mod")
		if err != nil {
			t.Fatal(err)
		}
		for image, module := range map[string]string{"nats": "github.com/nats-io/nats-server/v2", "ollama/ollama": "github.com/ollama/ollama"} {
			m := regexp.MustCompile(regexp.QuoteMeta(module) + ` v([0-9.]+)`).FindSubmatch(mod)
			if m == nil {
				t.Fatalf("go.mod has no %s", module)
			}
			for _, s := range p.Services {
				if name, tag, _ := strings.Cut(s.Image, ":"); name == image && tag != string(m[1]) && !strings.HasPrefix(tag, string(m[1])+"-") {
					t.Errorf("%s runs %s, but herd pins and tests %s %s", s.Name, s.Image, module, m[1])
				}
			}
		}
	})
	t.Run("healthchecks", func(t *testing.T) {
		for _, s := range p.Services {
			img := imageOf(t, s)
			if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0 {
				continue
			}
			test := s.HealthCheck.Test
			if test[0] != "CMD" || len(test) < 2 {
				t.Errorf("%s: healthcheck %v: use the CMD form, so the tests can check and run it", s.Name, test)
				continue
			}
			if img.lookPath(test[1]) == "" {
				t.Errorf("%s: healthcheck runs %s, which %s does not have (%s)", s.Name, test[1], s.Image, img.about)
			}
		}
		for _, s := range p.Services {
			for dep, d := range s.DependsOn {
				ds, err := p.GetService(dep)
				if err != nil {
					t.Fatal(err)
				}
				if d.Condition == types.ServiceConditionHealthy && (ds.HealthCheck == nil || len(ds.HealthCheck.Test) == 0) {
					t.Errorf("%s waits for %s to be healthy, which has no healthcheck", s.Name, dep)
				}
			}
		}
	})
}

// composeScale is how many containers of a service TestComposeStack runs,
// as `docker compose up --scale worker=2` would.
var composeScale = map[string]int{"worker": 2}

// composeStack runs compose.yaml's services as local processes: each
// container's command line, environment and mounted files, with the pinned
// binaries for the images' programs, every container path under a
// directory of its own, service hostnames as 127.0.0.1 and container ports
// as free local ports.
type composeStack struct {
	t       *testing.T
	p       *types.Project
	tools   map[string]string // "tool:NAME", "build:NAME" -> local path
	volumes map[string]string // named volume -> directory; "" -> where they are made
	ports   map[string]int    // "instance/container port" -> local port
	running map[string][]*composeContainer
	healthy map[string]bool
}

// composeContainer is one container of a service, run as a process.
type composeContainer struct {
	name   string // the service's name, or service#N for the replicas after the first
	svc    types.ServiceConfig
	img    composeImage
	root   string
	env    []string
	log    string
	exited chan struct{}
	err    error // the process's exit, valid once exited is closed
}

var hostPortRe = regexp.MustCompile(`([A-Za-z0-9_.-]+):([0-9]{2,5})`)

// port returns the local port standing for container port n of instance.
func (c *composeStack) port(instance string, n int) int {
	key := fmt.Sprintf("%s/%d", instance, n)
	if p, ok := c.ports[key]; ok {
		return p
	}
	for {
		p := testbin.FreePort(c.t)
		if !slices.Contains(slices.Collect(maps.Values(c.ports)), p) {
			c.ports[key] = p
			return p
		}
	}
}

// rewrite replaces each host:port in v that names a service (or, for self,
// localhost, 127.0.0.1 or 0.0.0.0) with 127.0.0.1 and the local port.
func (c *composeStack) rewrite(v, self string) string {
	return hostPortRe.ReplaceAllStringFunc(v, func(m string) string {
		sm := hostPortRe.FindStringSubmatch(m)
		host, n := sm[1], must(strconv.Atoi(sm[2]))
		switch {
		case host == "localhost" || host == "127.0.0.1" || host == "0.0.0.0":
			host = self
		case !slices.Contains(c.p.ServiceNames(), host):
			return m
		}
		return "127.0.0.1:" + strconv.Itoa(c.port(host, n))
	})
}

// local returns the local path of an image's file (composeImage.files).
func (c *composeStack) local(what string) string {
	if p, ok := strings.CutPrefix(what, "repo:"); ok {
		return must(filepath.Abs(p))
	}
	p, ok := c.tools[what]
	if !ok {
		c.t.Fatalf("no local build of %s", what)
	}
	return p
}

// runnable reports whether the tests can run s's command.
func (c *composeStack) runnable(s types.ServiceConfig) bool {
	img := imageOf(c.t, s)
	args := commandLine(s, img)
	return len(args) > 0 && img.files[img.lookPath(args[0])] != ""
}

// start starts container name of s.
func (c *composeStack) start(s types.ServiceConfig, name string) *composeContainer {
	t := c.t
	img := imageOf(t, s)
	ct := &composeContainer{name: name, svc: s, img: img, exited: make(chan struct{})}
	ct.root = containerRoot(t, s, img, c.volumes, c.local)
	args := commandLine(s, img)
	args[0] = c.local(img.files[img.lookPath(args[0])])
	for i := 1; i < len(args); i++ {
		args[i] = mapPath(c.rewrite(args[i], name), ct.root)
	}
	if img.listen != nil {
		args = append(args, img.listen(t, args, func(n int) int { return c.port(name, n) }, ct.root)...)
	}
	env := map[string]string{}
	maps.Copy(env, img.env)
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	ct.env = []string{"PATH=" + os.Getenv("PATH")}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		ct.env = append(ct.env, k+"="+mapPath(c.rewrite(env[k], name), ct.root))
	}
	ct.log = filepath.Join(t.TempDir(), strings.ReplaceAll(name, "#", "-")+".log")
	logf, err := os.Create(ct.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = ct.root, ct.env, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t.Logf("%s: %s", name, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		ct.err = cmd.Wait()
		logf.Close()
		close(ct.exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-ct.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-ct.exited
		}
		if t.Failed() {
			out, _ := os.ReadFile(ct.log)
			if len(out) > 3000 {
				out = out[len(out)-3000:]
			}
			t.Logf("%s's output (end):\n%s", name, out)
		}
	})
	c.running[s.Name] = append(c.running[s.Name], ct)
	return ct
}

// exitedEarly fails the test when ct has exited.
func (c *composeStack) exitedEarly(ct *composeContainer) error {
	select {
	case <-ct.exited:
		out, _ := os.ReadFile(ct.log)
		if len(out) > 2000 {
			out = out[len(out)-2000:]
		}
		return fmt.Errorf("%s exited: %v\n%s", ct.name, ct.err, out)
	default:
		return nil
	}
}

// healthcheck runs the equivalent of ct's healthcheck once: the command
// itself when the tests have a build of it, an HTTP GET for wget.
func (c *composeStack) healthcheck(ctx context.Context, ct *composeContainer) error {
	test := ct.svc.HealthCheck.Test[1:]
	exe := ct.img.lookPath(test[0])
	args := make([]string, len(test))
	for i, a := range test {
		args[i] = mapPath(c.rewrite(a, ct.name), ct.root)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if what := ct.img.files[exe]; what != "" {
		cmd := exec.CommandContext(ctx, c.local(what), args[1:]...)
		cmd.Dir, cmd.Env = ct.root, ct.env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(test, " "), err, out)
		}
		return nil
	}
	if path.Base(exe) != "wget" {
		c.t.Fatalf("%s: no equivalent of healthcheck %v here", ct.name, test)
	}
	// BusyBox wget: -q quiet, -O FILE (- for stdout), -T SECONDS, --spider;
	// it exits 1 on an HTTP error status.
	url := ""
	for i := 1; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-q" || a == "-O-" || a == "--spider":
		case a == "-O" || a == "-T":
			i++
		case strings.HasPrefix(a, "http://") && url == "":
			url = a
		default:
			c.t.Fatalf("%s: healthcheck %v: wget argument %q unknown to the test", ct.name, test, a)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s %s", url, resp.Status, body)
	}
	return nil
}

// waitFor waits until every container of service dep meets condition.
func (c *composeStack) waitFor(ctx context.Context, dep, condition string) {
	t := c.t
	t.Helper()
	cts := c.running[dep]
	if len(cts) == 0 {
		t.Fatalf("%s is not running", dep)
	}
	switch condition {
	case types.ServiceConditionStarted:
	case types.ServiceConditionCompletedSuccessfully:
		for _, ct := range cts {
			select {
			case <-ct.exited:
				if ct.err != nil {
					t.Fatalf("%s: %v", ct.name, c.exitedEarly(ct))
				}
			case <-ctx.Done():
				t.Fatalf("%s did not complete: %v", ct.name, ctx.Err())
			}
		}
	case types.ServiceConditionHealthy:
		if c.healthy[dep] {
			return
		}
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		for _, ct := range cts {
			var last error
			for {
				if err := c.exitedEarly(ct); err != nil {
					t.Fatal(err)
				}
				if last = c.healthcheck(ctx, ct); last == nil {
					break
				}
				select {
				case <-ctx.Done():
					t.Fatalf("%s never healthy: %v", ct.name, last)
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
		c.healthy[dep] = true
	default:
		t.Fatalf("depends_on condition %s unknown to the test", condition)
	}
}

// order returns the services in an order that starts each after what it
// depends on.
func (c *composeStack) order() []string {
	var out []string
	seen := map[string]bool{}
	var visit func(string)
	visit = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		s := must(c.p.GetService(name))
		for _, dep := range slices.Sorted(maps.Keys(s.DependsOn)) {
			visit(dep)
		}
		out = append(out, name)
	}
	for _, name := range slices.Sorted(slices.Values(c.p.ServiceNames())) {
		visit(name)
	}
	return out
}

// natsListen is composeImage.listen for nats-server: the ports its
// configuration sets (or the defaults), as flags, which override the file.
func natsListen(t *testing.T, args []string, port func(int) int, root string) []string {
	fs := flag.NewFlagSet("nats-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	noop := func() {}
	opts, err := server.ConfigureOptions(fs, args[1:], noop, noop, noop)
	if err != nil {
		t.Fatalf("nats-server %s: %v", strings.Join(args[1:], " "), err)
	}
	out := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port(opts.Port))}
	if opts.HTTPPort != 0 {
		out = append(out, "-m", strconv.Itoa(port(opts.HTTPPort)))
	}
	if opts.StoreDir != "" && !strings.HasPrefix(opts.StoreDir, root) {
		t.Fatalf("nats-server's store_dir %s is set in its configuration file: give it on the command line "+
			"(--store_dir, next to the volume), where the test can map it (a flag and the file both setting it is an error)", opts.StoreDir)
	}
	return out
}

// TestComposeStack runs compose.yaml without Docker (composeStack): NATS
// from its configuration file, Ollama provisioned by the stack's one-shot
// services, the dispatcher, two workers and the optimizer, each started
// once what it depends on is healthy or done, as compose does; then agent
// alice asks on herd.ask.high.alice and must get answers. A flag
// nats-server does not know, a configuration that does not load, a
// healthcheck that does not pass or a model that is missing fails it.
// Services whose image has no local build (the NATS exporter, Prometheus,
// Grafana) are not run; TestComposeDefaults checks them.
func TestComposeStack(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nats-server, Ollama and herd's services")
	}
	tools := map[string]string{
		"tool:nats-server": testbin.Tool(t, "nats-server"),
		"tool:ollama":      testbin.Ollama(t),
	}
	out, err := exec.Command(tools["tool:nats-server"], "--version").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if mod := must(os.ReadFile("go.mod")); !bytes.Contains(mod, []byte("github.com/nats-io/nats-server/v2 "+strings.TrimSpace(strings.TrimPrefix(string(out), "nats-server: ")))) {
		t.Fatalf("bin/nats-server is %s, not the version go.mod pins (scripts/tools.sh nats-server)", out)
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/...")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, c := range must(filepath.Glob("cmd/*/main.go")) {
		name := filepath.Base(filepath.Dir(c))
		tools["build:"+name] = filepath.Join(dir, name)
	}
	c := &composeStack{
		t: t, p: loadCompose(t), tools: tools,
		volumes: map[string]string{"": t.TempDir()},
		ports:   map[string]int{},
		running: map[string][]*composeContainer{},
		healthy: map[string]bool{},
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	begin := time.Now()
	for _, name := range c.order() {
		s := must(c.p.GetService(name))
		if !c.runnable(s) {
			t.Logf("%s (%s) not run: %s", name, s.Image, imageOf(t, s).about)
			continue
		}
		for _, dep := range slices.Sorted(maps.Keys(s.DependsOn)) {
			if !c.runnable(must(c.p.GetService(dep))) {
				t.Fatalf("%s depends on %s, which the test cannot run", name, dep)
			}
			c.waitFor(ctx, dep, s.DependsOn[dep].Condition)
		}
		for i := range max(composeScale[name], 1) {
			inst := name
			if i > 0 {
				inst = fmt.Sprintf("%s#%d", name, i+1)
			}
			c.start(s, inst)
		}
	}
	// herd's services have no healthcheck (their image has no program to
	// run one): wait for /readyz on their --http port, as an operator would.
	for _, name := range []string{"dispatcher", "worker", "optimizer"} {
		for _, ct := range c.running[name] {
			p, ok := c.ports[ct.name+"/8080"]
			if !ok {
				t.Fatalf("%s serves no --http 0.0.0.0:8080", ct.name)
			}
			url := fmt.Sprintf("http://127.0.0.1:%d/readyz", p)
			for {
				if err := c.exitedEarly(ct); err != nil {
					t.Fatal(err)
				}
				resp, err := http.Get(url)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
				select {
				case <-ctx.Done():
					t.Fatalf("%s not ready: %v", ct.name, ctx.Err())
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}
	t.Logf("stack up in %v", time.Since(begin).Round(time.Millisecond))

	// Agent alice, with its password and inbox, asks herd-tiny.
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", c.ports["nats/4222"]),
		nats.UserInfo("alice", "pw-nats_password_alice"), nats.CustomInboxPrefix("_INBOX.alice")) // the inbox auth.conf lets alice read
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ask := func(prompt string) (*nats.Msg, error) {
		body := fmt.Sprintf(`{"model":"herd-tiny","prompt":%q,"options":{"num_predict":8}}`, prompt)
		return nc.RequestWithContext(ctx, "herd.ask.high.alice", []byte(body))
	}
	// A worker registers its Ollama's models a moment after it is ready.
	first, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	var msg *nats.Msg
	for {
		msg, err = ask("hello")
		if err == nil && msg.Header.Get(wire.HdrStatus) == "200" {
			break
		}
		select {
		case <-first.Done():
			if err == nil {
				err = fmt.Errorf("Herd-Status %s: %s", msg.Header.Get(wire.HdrStatus), msg.Data)
			}
			t.Fatalf("alice's ask never answered 200: %v", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	t.Logf("first answer %v after the first start: %s", time.Since(begin).Round(time.Millisecond), msg.Data)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			m, err := ask(fmt.Sprintf("question %d", i))
			if err != nil {
				t.Errorf("ask %d: %v", i, err)
				return
			}
			var r struct {
				Response string `json:"response"`
				Done     bool   `json:"done"`
			}
			if st := m.Header.Get(wire.HdrStatus); st != "200" || json.Unmarshal(m.Data, &r) != nil || !r.Done || r.Response == "" {
				t.Errorf("ask %d: Herd-Status %s: %s", i, st, m.Data)
			}
		})
	}
	wg.Wait()
	// Every worker replica serves its metrics where Prometheus's DNS
	// discovery finds it (each container's port 8080).
	for _, ct := range c.running["worker"] {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", c.ports[ct.name+"/8080"]))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Contains(b, []byte("herd_worker_")) {
			t.Errorf("%s's /metrics has no herd_worker_ series", ct.name)
		}
	}
}

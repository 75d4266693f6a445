package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/wire"
)

func TestCaptureOnOffStatus(t *testing.T) {
	s := provisioned(t)
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# HELP herd_capture_records_total x\n# TYPE herd_capture_records_total counter\n"+
			"herd_capture_records_total 12\nherd_capture_dropped_total 1\nherd_capture_enabled 1\ngo_goroutines 9\n")
	}))
	t.Cleanup(metrics.Close)

	out, _ := mustHerd(t, "capture", "status", "--nats", s.URL, "--metrics", "none")
	if !strings.Contains(out, "not switched at run time") || !strings.Contains(out, "0 records") || !strings.Contains(out, "keeps up to 24h0m0s, up to 1.0 GiB") {
		t.Fatalf("status before any switch:\n%s", out)
	}
	_, js := s.Connect(t)
	control, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"on", "off", "on"} {
		out, _ := mustHerd(t, "capture", v, "--nats", s.URL)
		if !strings.HasPrefix(out, "capture "+v+":") {
			t.Fatalf("capture %s printed %q", v, out)
		}
		e, err := control.Get(t.Context(), capture.KeyEnabled)
		if err != nil || string(e.Value()) != v {
			t.Fatalf("after capture %s, %s = %v, %v", v, capture.KeyEnabled, e, err)
		}
	}

	// Two records in the stream, stored out of time order (an import
	// after live traffic): status shows the first and last stored.
	gen := loadgenFile(t, "--duration", "20s", "--max-requests", "2")
	mustHerd(t, "capture", "import", gen, "--nats", s.URL)
	out, _ = mustHerd(t, "capture", "status", "--nats", s.URL, "--metrics", metrics.URL)
	for _, want := range []string{
		"capture      on (switched ",
		"stream       HERD_CAPTURE: 2 records,",
		"records      first 2026-03-01T12:00:",
		"dispatcher   12 recorded, 1 dropped, capture on (" + metrics.URL + ")",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	// An unreachable dispatcher is not an error: its counters are optional.
	out, _ = mustHerd(t, "capture", "status", "--nats", s.URL, "--metrics", "http://127.0.0.1:1/metrics")
	if !strings.Contains(out, "dispatcher   counters not available") {
		t.Fatalf("status with no dispatcher:\n%s", out)
	}
}

// TestExportImportRoundTrip: a loadgen capture imported into one server,
// exported, imported into a second server and exported again is the same
// file, byte for byte; so is loadgen --stream's.
func TestExportImportRoundTrip(t *testing.T) {
	a, b := provisioned(t), provisioned(t)
	gen := loadgenFile(t, "--duration", "30s")
	want := readFile(t, gen)
	lines := bytes.Count(want, []byte("\n"))
	if lines < 100 {
		t.Fatalf("only %d generated records", lines)
	}

	out, _ := mustHerd(t, "capture", "import", gen, "--nats", a.URL)
	if !strings.Contains(out, fmt.Sprintf("imported %d records", lines)) {
		t.Fatalf("import printed %q, want %d records", out, lines)
	}
	dir := t.TempDir()
	fromA := filepath.Join(dir, "a.jsonl.gz")
	_, errOut := mustHerd(t, "capture", "export", "--out", fromA, "--nats", a.URL)
	if !strings.Contains(errOut, fmt.Sprintf("exported %d of %d records to %s", lines, lines, fromA)) {
		t.Fatalf("export printed %q", errOut)
	}
	zr, err := gzip.NewReader(bytes.NewReader(readFile(t, fromA)))
	if err != nil {
		t.Fatal(err)
	}
	var unzipped bytes.Buffer
	if _, err := unzipped.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(unzipped.Bytes(), want) {
		t.Fatal("export from the first server differs from the imported file")
	}
	mustHerd(t, "capture", "import", fromA, "--nats", b.URL)
	fromB, _ := mustHerd(t, "capture", "export", "--nats", b.URL) // stdout
	if fromB != string(want) {
		t.Fatal("export from the second server differs from the original file")
	}

	// loadgen --stream writes the same records as loadgen --out.
	c := provisioned(t)
	_, errOut = mustHerd(t, "loadgen", "--start", "2026-03-01T12:00:00Z", "--seed", "9", "--duration", "30s", "--stream", "--nats", c.URL)
	if !strings.Contains(errOut, fmt.Sprintf("wrote %d requests", lines)) || !strings.Contains(errOut, "to HERD_CAPTURE") {
		t.Fatalf("loadgen --stream printed %q", errOut)
	}
	if fromC, _ := mustHerd(t, "capture", "export", "--nats", c.URL); fromC != string(want) {
		t.Fatal("export after loadgen --stream differs from loadgen --out")
	}
}

func TestExportSelects(t *testing.T) {
	s := provisioned(t)
	gen := loadgenFile(t, "--duration", "30s")
	mustHerd(t, "capture", "import", gen, "--nats", s.URL)
	var all []capture.Record
	f, err := os.Open(gen)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if err := capture.ReadJSONL(f, func(r capture.Record) error { all = append(all, r); return nil }); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		args []string
		keep func(r capture.Record) bool
	}{
		{"priority", []string{"--filter", "priority=high, priority=low"}, func(r capture.Record) bool { return r.Priority != wire.Normal }},
		{"agent pattern and op", []string{"--filter", "agent=utility-*,op=embed"}, func(r capture.Record) bool {
			return strings.HasPrefix(r.Agent, "utility-") && r.Op == "embed"
		}},
		{"model", []string{"--filter", "model=llama3.2:3b", "--filter", "model=herd-tiny"}, func(r capture.Record) bool { return r.Model == "llama3.2:3b" || r.Model == "herd-tiny" }},
		{"time window", []string{"--since", "2026-03-01T12:00:10Z", "--until", "2026-03-01T12:00:20Z"}, func(r capture.Record) bool {
			return !r.Time.Before(t0.Add(10*time.Second)) && r.Time.Before(t0.Add(20*time.Second))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want bytes.Buffer
			for _, r := range all {
				if tc.keep(r) {
					if err := capture.WriteJSONL(&want, []capture.Record{r}); err != nil {
						t.Fatal(err)
					}
				}
			}
			if want.Len() == 0 {
				t.Fatal("the filter keeps nothing; a weak test")
			}
			out, _ := mustHerd(t, append([]string{"capture", "export", "--nats", s.URL}, tc.args...)...)
			if out != want.String() {
				t.Fatalf("export %v: %d lines, want %d", tc.args, strings.Count(out, "\n"), strings.Count(want.String(), "\n"))
			}
		})
	}
	// A --since after the last record exports nothing, at once.
	start := time.Now()
	out, errOut := mustHerd(t, "capture", "export", "--nats", s.URL, "--since", "2099-01-01T00:00:00Z")
	if out != "" || !strings.Contains(errOut, "exported 0 of 0 records") || time.Since(start) > 3*time.Second {
		t.Fatalf("export after the end: %q %q in %v", out, errOut, time.Since(start))
	}
}

func TestImportRejectsBadLines(t *testing.T) {
	s := provisioned(t)
	good := `{"t":"2026-03-01T12:00:00Z","id":"a","priority":"high","agent":"x","model":"m","op":"generate","body":{"model":"m","prompt":"p"}}`
	file := strings.Join([]string{
		good,
		`{not json`,
		strings.Replace(good, `"high"`, `"urgent"`, 1),
		"",
		strings.Replace(good, `"agent":"x"`, `"agent":"a.b"`, 1),
		strings.Replace(good, `"t":"2026-03-01T12:00:00Z",`, "", 1),
		strings.Replace(good, `"id":"a"`, `"id":"b"`, 1),
		strings.Replace(good, `,"body":{"model":"m","prompt":"p"}`, "", 1),
	}, "\n") + "\n"
	out, errOut, err := herd(t, file, "capture", "import", "-", "--nats", s.URL)
	if err == nil || !strings.Contains(err.Error(), "5 bad lines") {
		t.Fatalf("err = %v, want 5 bad lines", err)
	}
	for _, want := range []string{"-: line 2: bad capture record", "line 3: bad capture record: priority \"urgent\"", "line 5: bad capture record: agent \"a.b\"", "line 6: bad capture record: no time", "line 8: bad capture record: no body"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if !strings.Contains(out, "imported 2 records from - into HERD_CAPTURE") {
		t.Fatalf("stdout %q", out)
	}
	exported, _ := mustHerd(t, "capture", "export", "--nats", s.URL)
	if strings.Count(exported, "\n") != 2 || !strings.Contains(exported, `"id":"b"`) {
		t.Fatalf("stream holds:\n%s", exported)
	}
}

func TestCaptureErrors(t *testing.T) {
	bare := natstest.Start(t) // JetStream, but no herd streams
	gen := loadgenFile(t, "--duration", "5s")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unreachable", []string{"capture", "status", "--nats", "nats://127.0.0.1:1"}, "is herd up running, or --nats set?"},
		{"on without herd", []string{"capture", "on", "--nats", bare.URL}, "bucket herd_control does not exist: run herd up or a dispatcher first"},
		{"export without herd", []string{"capture", "export", "--nats", bare.URL}, "stream HERD_CAPTURE does not exist: run herd up or a dispatcher first"},
		{"import without herd", []string{"capture", "import", gen, "--nats", bare.URL}, "stream HERD_CAPTURE does not exist: run herd up or a dispatcher first"},
		{"loadgen stream without herd", []string{"loadgen", "--stream", "--nats", bare.URL}, "stream HERD_CAPTURE does not exist"},
		{"missing file", []string{"capture", "import", "/nonexistent.jsonl", "--nats", provisioned(t).URL}, "no such file"},
		{"bad filter", []string{"capture", "export", "--filter", "colour=red"}, "not agent, priority, model or op"},
		{"bad priority filter", []string{"capture", "export", "--filter", "priority=urgent"}, "not high, normal or low"},
		{"bad filter term", []string{"capture", "export", "--filter", "priority=high,low"}, `"low" is not key=value`},
		{"bad since", []string{"capture", "export", "--since", "yesterday"}, "neither an RFC 3339 time"},
		{"since after until", []string{"capture", "export", "--since", "1h", "--until", "2h"}, "is not before --until"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := herd(t, "", tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

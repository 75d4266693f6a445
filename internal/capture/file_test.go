package capture_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// TestReaderGoesOnAfterBadLines: a bad line is an ErrBadRecord naming its
// line, and the next Next reads the line after it.
func TestReaderGoesOnAfterBadLines(t *testing.T) {
	good := `{"t":"2026-03-01T12:00:00Z","id":"a","priority":"high","agent":"x","body":{}}`
	r := capture.NewReader(strings.NewReader(good + "\n{oops\n\n" + good + "\n"))
	var got []string
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		switch {
		case errors.Is(err, capture.ErrBadRecord):
			got = append(got, err.Error()[:6])
		case err != nil:
			t.Fatal(err)
		default:
			got = append(got, rec.ID)
		}
	}
	if strings.Join(got, ",") != "a,line 2,a" || r.Line() != 4 {
		t.Fatalf("read %q up to line %d", got, r.Line())
	}
}

// TestFileRoundTrip: CreateFile and OpenFile write and read plain and
// gzipped files the same way.
func TestFileRoundTrip(t *testing.T) {
	recs := []capture.Record{{Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), ID: "a", Priority: wire.Low, Agent: "x", Body: []byte(`{"prompt":"p"}`)}}
	for _, name := range []string{"c.jsonl", "c.jsonl.gz"} {
		p := filepath.Join(t.TempDir(), name)
		w, err := capture.CreateFile(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := capture.WriteJSONL(w, recs); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(p)
		if gz := len(raw) > 2 && raw[0] == 0x1f && raw[1] == 0x8b; gz != strings.HasSuffix(name, ".gz") {
			t.Errorf("%s: gzipped %v", name, gz)
		}
		f, err := capture.OpenFile(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		var back []capture.Record
		err = capture.ReadJSONL(f, func(r capture.Record) error { back = append(back, r); return nil })
		_ = f.Close()
		if err != nil || len(back) != 1 || back[0].ID != "a" {
			t.Fatalf("%s read back %+v, %v", name, back, err)
		}
	}
}

// TestPublisherWindows: records published with a window of 2 are all
// acknowledged and stored once Flush returns.
func TestPublisherWindows(t *testing.T) {
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	_, js := srv.Connect(t)
	pub := capture.NewPublisher(js, 2)
	for i := range 5 {
		rec := capture.Record{Time: time.Now(), ID: string(rune('a' + i)), Priority: wire.Normal, Agent: "x", Body: []byte(`{}`)}
		if err := pub.Publish(t.Context(), &rec); err != nil {
			t.Fatal(err)
		}
		if want := i + 1 - (i+1)%2; pub.Acked() != want {
			t.Fatalf("after %d records %d acknowledged, want %d", i+1, pub.Acked(), want)
		}
	}
	if err := pub.Flush(t.Context()); err != nil || pub.Acked() != 5 {
		t.Fatalf("flush: %v, %d acknowledged", err, pub.Acked())
	}
	n := 0
	if err := capture.ReadStream(t.Context(), js, time.Time{}, time.Time{}, func(capture.Record) error { n++; return nil }); err != nil || n != 5 {
		t.Fatalf("stream holds %d records, %v", n, err)
	}
}

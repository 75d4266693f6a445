package replay

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/wire"
)

// ReadRecords reads a JSON-lines capture (capture.WriteJSONL) from rd.
// It returns capture.ErrBadRecord, naming the line, for a bad record.
func ReadRecords(rd io.Reader) ([]capture.Record, error) {
	var recs []capture.Record
	err := capture.ReadJSONL(rd, func(r capture.Record) error {
		recs = append(recs, r)
		return nil
	})
	return recs, err
}

// LoadFile reads a JSON-lines capture file (herd capture export, herd
// loadgen); a name ending in .gz is gunzipped and "-" reads standard
// input (capture.OpenFile).
func LoadFile(path string) ([]capture.Record, error) {
	f, err := capture.OpenFile(path, os.Stdin)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	recs, err := ReadRecords(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return recs, nil
}

// LoadStream reads the records in HERD_CAPTURE stored in [since, until)
// (a zero time is open). It blocks until it has read the last record that
// existed when it started.
func LoadStream(ctx context.Context, js jetstream.JetStream, since, until time.Time) ([]capture.Record, error) {
	var recs []capture.Record
	err := capture.ReadStream(ctx, js, since, until, func(r capture.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", wire.StreamCapture, err)
	}
	return recs, nil
}

// Load reads the records to send: from file, or when file is empty from
// HERD_CAPTURE in [since, until) on nc. It returns them with a line that
// names where they came from.
func Load(ctx context.Context, nc *nats.Conn, file string, since, until time.Time) ([]capture.Record, string, error) {
	if file != "" {
		recs, err := LoadFile(file)
		return recs, "file " + file, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, "", err
	}
	recs, err := LoadStream(ctx, js, since, until)
	return recs, "stream HERD_CAPTURE", err
}

package loadgen

import (
	"context"
	"encoding/json"
	"io"

	"github.com/sutazai/herd/internal/capture"
)

// Write writes the generator's remaining requests to w as JSON lines of
// capture.Record (the format of capture.WriteJSONL and `herd capture
// export`) and returns how many it wrote. progress, when not nil, is
// called after each record with the count so far. It returns the first
// write error.
func Write(w io.Writer, g *Generator, progress func(n int)) (int, error) {
	enc := json.NewEncoder(w)
	n := 0
	for {
		rec, ok := g.Next()
		if !ok {
			return n, nil
		}
		if err := enc.Encode(&rec); err != nil {
			return n, err
		}
		n++
		if progress != nil {
			progress(n)
		}
	}
}

// Publish publishes the generator's remaining requests into HERD_CAPTURE
// with pub, then waits for every acknowledgement. progress, when not nil,
// is called after each record with the count acknowledged so far. It
// blocks and returns the first publish error or ctx's error.
func Publish(ctx context.Context, g *Generator, pub *capture.Publisher, progress func(n int)) error {
	for {
		rec, ok := g.Next()
		if !ok {
			return pub.Flush(ctx)
		}
		if err := pub.Publish(ctx, &rec); err != nil {
			return err
		}
		if progress != nil {
			progress(pub.Acked())
		}
	}
}

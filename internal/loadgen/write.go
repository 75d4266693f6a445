package loadgen

import (
	"encoding/json"
	"io"
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

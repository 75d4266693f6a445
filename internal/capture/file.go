package capture

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sutazai/herd/internal/wire"
)

// MaxLine is the longest line of a capture file that Reader reads.
const MaxLine = 16 << 20

// Validate returns an error wrapping ErrBadRecord, saying what is wrong,
// when r cannot be published into HERD_CAPTURE or replayed: it needs a
// time, a priority of high, normal or low, an agent name that is one
// subject token (wire.ValidToken) and a body.
func (r *Record) Validate() error {
	switch {
	case r.Time.IsZero():
		return fmt.Errorf("%w: no time (\"t\")", ErrBadRecord)
	case !r.Priority.Valid():
		return fmt.Errorf("%w: priority %q is not high, normal or low", ErrBadRecord, r.Priority)
	case !wire.ValidToken(r.Agent):
		return fmt.Errorf("%w: agent %q is not 1-128 characters of A-Z a-z 0-9 _ = -", ErrBadRecord, r.Agent)
	case len(r.Body) == 0 || string(r.Body) == "null":
		return fmt.Errorf("%w: no body", ErrBadRecord)
	}
	return nil
}

// Reader reads the records of a JSON-lines capture (WriteJSONL, herd
// capture export, herd loadgen) one at a time. It is not safe for
// concurrent use.
type Reader struct {
	sc   *bufio.Scanner
	line int
}

// NewReader returns a Reader of rd.
func NewReader(rd io.Reader) *Reader {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	return &Reader{sc: sc}
}

// Next returns the next record, skipping blank lines; io.EOF at the end.
// A line that is not a valid record (Record.Validate) returns an error
// wrapping ErrBadRecord that starts with its line number; the caller may
// go on reading after it. Any other error (a line longer than MaxLine, a
// failed read) ends the file.
func (r *Reader) Next() (Record, error) {
	for r.sc.Scan() {
		r.line++
		b := r.sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil {
			return rec, fmt.Errorf("line %d: %w: %v", r.line, ErrBadRecord, err)
		}
		if err := rec.Validate(); err != nil {
			return rec, fmt.Errorf("line %d: %w", r.line, err)
		}
		return rec, nil
	}
	err := r.sc.Err()
	switch {
	case err == nil:
		return Record{}, io.EOF
	case errors.Is(err, bufio.ErrTooLong):
		return Record{}, fmt.Errorf("line %d: longer than %d bytes", r.line+1, MaxLine)
	}
	return Record{}, fmt.Errorf("line %d: %w", r.line+1, err)
}

// Line returns the number of the line Next read last.
func (r *Reader) Line() int { return r.line }

// OpenFile opens the capture file name for reading: "-" is stdin, and a
// name ending in .gz is gunzipped. The caller closes it.
func OpenFile(name string, stdin io.Reader) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(stdin), nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(name, ".gz") {
		return f, nil
	}
	gz, err := gzip.NewReader(f)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{gz, closers{gz, f}}, nil
}

// CreateFile creates the capture file name for writing, buffered: "-" is
// stdout, and a name ending in .gz is gzipped. Close flushes it and must
// be called; its error says whether everything was written.
func CreateFile(name string, stdout io.Writer) (io.WriteCloser, error) {
	if name == "-" {
		return &bufferedFile{Writer: bufio.NewWriterSize(stdout, 256<<10)}, nil
	}
	f, err := os.Create(name)
	if err != nil {
		return nil, err
	}
	bf := &bufferedFile{Writer: bufio.NewWriterSize(f, 256<<10), closers: closers{f}}
	if strings.HasSuffix(name, ".gz") {
		gz := gzip.NewWriter(bf.Writer)
		return &bufferedFile{Writer: bufio.NewWriterSize(gz, 256<<10), closers: closers{gz, bf}}, nil
	}
	return bf, nil
}

// bufferedFile flushes its buffer, then closes what lies beneath in order.
type bufferedFile struct {
	*bufio.Writer
	closers closers
}

func (b *bufferedFile) Close() error { return errors.Join(b.Flush(), b.closers.Close()) }

// closers close in order, returning every error.
type closers []io.Closer

func (cs closers) Close() error {
	var err error
	for _, c := range cs {
		err = errors.Join(err, c.Close())
	}
	return err
}

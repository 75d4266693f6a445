package harness

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/wire"
)

// Entry is what a Ledger knows about one request id. R is what the test
// sent (its own type) and keeps with the entry.
type Entry[R any] struct {
	ID string
	// Req is what was sent; Sent when.
	Req  R
	Sent time.Time
	// Returned is set once the agent's call returned, with Err (nil for an
	// answer) and Meta (nil when the publish was never acknowledged).
	Returned bool
	Err      error
	Meta     *client.Meta
	// Acked is set once JetStream acknowledged the request.
	Acked bool
	// Status is the final status the agent saw: 200 for an answer, the
	// error reply's status, 0 while it has none. Code is the error's code.
	Status int
	Code   wire.Code
	// Replies are the Herd-Status of every final reply seen on the wire
	// for the id, in arrival order; more than one is a duplicate. Seen
	// describes each (time, status, worker, cache, queue and total ms).
	Replies []int
	Seen    []string
	// Finals are the final replies themselves, in arrival order.
	Finals []*nats.Msg
	// DeadReasons are the reasons of the id's dead letters in HERD_DLQ.
	DeadReasons []string
	// Chunks counts the streamed chunks seen (messages before the final);
	// Seqs are their Herd-Seq in arrival order.
	Chunks int
	Seqs   []int
	// Inbox is the subject herd answered on (empty until it did).
	Inbox string
}

// SetResult records what the agent's call returned: Returned, Err and
// Meta; Acked when meta is not nil (the SDK returns metadata once the
// publish was acknowledged); Status and Code from err.
func (e *Entry[R]) SetResult(meta *client.Meta, err error) {
	e.Returned, e.Meta, e.Err = true, meta, err
	e.Acked = meta != nil
	e.Status, e.Code = StatusOf(err)
}

// StatusOf is the status an agent saw for a call that returned err: 200
// for nil, the status and code of a herd error reply, else 0.
func StatusOf(err error) (int, wire.Code) {
	var herr *client.Error
	switch {
	case err == nil:
		return http.StatusOK, ""
	case errors.As(err, &herr):
		return herr.Status, wire.Code(herr.Code)
	default:
		return 0, ""
	}
}

// Spliced reports whether the id's stream started again: a chunk whose
// Herd-Seq is not one more than the one before (the first is 0).
func (e *Entry[R]) Spliced() bool {
	for i, s := range e.Seqs {
		if s != i {
			return true
		}
	}
	return false
}

// Ledger records requests by id and every outcome seen for them. It is
// safe for concurrent use.
type Ledger[R any] struct {
	// mu guards entries, order and answered.
	mu      sync.Mutex
	entries map[string]*Entry[R]
	order   []string
	// answered are the ids in the order their final replies arrived (an
	// id answered twice is in it twice).
	answered []string
}

// NewLedger returns an empty ledger.
func NewLedger[R any]() *Ledger[R] {
	return &Ledger[R]{entries: map[string]*Entry[R]{}}
}

// Add records a request id sent now with req, and reports false (changing
// nothing) when the id is recorded already.
func (l *Ledger[R]) Add(id string, req R) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.entries[id] != nil {
		return false
	}
	l.entries[id] = &Entry[R]{ID: id, Req: req, Sent: time.Now()}
	l.order = append(l.order, id)
	return true
}

// Update runs f on id's entry under the ledger's lock, and reports false
// when the id is not recorded.
func (l *Ledger[R]) Update(id string, f func(*Entry[R])) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[id]
	if e == nil {
		return false
	}
	f(e)
	return true
}

// Entry returns a copy of id's entry; ok is false when there is none.
func (l *Ledger[R]) Entry(id string) (e Entry[R], ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.entries[id]; p != nil {
		return *p, true
	}
	return Entry[R]{ID: id}, false
}

// Entries returns copies of every entry, in the order they were added.
func (l *Ledger[R]) Entries() []Entry[R] {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Entry[R], 0, len(l.order))
	for _, id := range l.order {
		out = append(out, *l.entries[id])
	}
	return out
}

// IDs returns the recorded ids in the order they were added.
func (l *Ledger[R]) IDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.order...)
}

// Observe records a message herd sent to an agent's reply subject: a
// final reply (it has Herd-Status) or a streamed chunk. The id is its
// Herd-Request-Id, else the subject's last token. Presence probes
// (Herd-Probe) and messages for ids not recorded are ignored; it reports
// whether the message was recorded.
func (l *Ledger[R]) Observe(m *nats.Msg) bool {
	if m.Header.Get(wire.HdrProbe) != "" {
		return false
	}
	id := m.Header.Get(wire.HdrRequestID)
	if id == "" {
		id = m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	}
	return l.ObserveAs(id, m)
}

// ObserveAs is Observe for a message known to answer request id (its
// reply subject names it, whatever id herd gave the request).
func (l *Ledger[R]) ObserveAs(id string, m *nats.Msg) bool {
	if m.Header.Get(wire.HdrProbe) != "" {
		return false
	}
	status := m.Header.Get(wire.HdrStatus)
	at := time.Now().Format("15:04:05.000")
	return l.Update(id, func(e *Entry[R]) {
		e.Inbox = m.Subject
		if status == "" {
			e.Chunks++
			if seq, err := strconv.Atoi(m.Header.Get(wire.HdrSeq)); err == nil {
				e.Seqs = append(e.Seqs, seq)
			}
			return
		}
		code, _ := strconv.Atoi(status)
		e.Replies = append(e.Replies, code)
		e.Finals = append(e.Finals, m)
		l.answered = append(l.answered, id)
		e.Seen = append(e.Seen, fmt.Sprintf("%s status %s worker %s cache %s queue %sms total %sms", at,
			status, m.Header.Get(wire.HdrWorker), m.Header.Get(wire.HdrCache),
			m.Header.Get(wire.HdrQueueMs), m.Header.Get(wire.HdrTotalMs)))
	})
}

// Answered returns the ids in the order their final replies arrived.
func (l *Ledger[R]) Answered() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.answered...)
}

// Dead records a dead letter for id with its reason; false when the id
// is not recorded.
func (l *Ledger[R]) Dead(id, reason string) bool {
	return l.Update(id, func(e *Entry[R]) { e.DeadReasons = append(e.DeadReasons, reason) })
}

// Counts are a ledger's totals.
type Counts struct {
	// Sent counts requests sent; Acked those JetStream acknowledged;
	// Unacked those it never did (the agent saw the publish fail).
	Sent, Acked, Unacked int
	// Replies counts the final replies seen on the wire for acknowledged
	// ids (an SDK keeps only the first of an id's). Recovered counts the
	// ids whose reply never came and whose outcome the agent found in
	// herd_results instead.
	Replies, Recovered int
	// Lost counts acknowledged ids without any final outcome.
	Lost int
	// Duplicated counts ids with more than one final outcome (a second
	// reply, a second dead letter, or an answer and a dead letter).
	Duplicated int
	// Spliced counts ids whose streamed chunks started again (Herd-Seq).
	Spliced int
	// Answered, Errors and Dead split the ids with an outcome: an answer,
	// an error reply, a dead letter (which also has its error reply).
	Answered, Errors, Dead int
	// ByStatus counts the final statuses ("200", "503 backend_unavailable"...).
	ByStatus map[string]int
	// LostIDs, DuplicatedIDs and SplicedIDs name them.
	LostIDs, DuplicatedIDs, SplicedIDs []string
}

// Counts tallies the ledger over every id recorded.
func (l *Ledger[R]) Counts() Counts {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := Counts{ByStatus: map[string]int{}}
	for _, id := range l.order {
		e := l.entries[id]
		c.Sent++
		if !e.Acked {
			c.Unacked++
			continue
		}
		c.Acked++
		c.Replies += len(e.Replies)
		if e.Spliced() {
			c.Spliced++
			c.SplicedIDs = append(c.SplicedIDs, id)
		}
		status, code := e.Status, e.Code
		if status == 0 && len(e.Replies) > 0 {
			status, code = e.Replies[0], ""
		}
		switch {
		case status == 0 && len(e.DeadReasons) == 0:
			c.Lost++
			c.LostIDs = append(c.LostIDs, id)
			continue
		case len(e.DeadReasons) > 0:
			c.Dead++
		case status == http.StatusOK:
			c.Answered++
		default:
			c.Errors++
		}
		if len(e.Replies) == 0 && e.Status != 0 {
			c.Recovered++
		}
		key := fmt.Sprint(status)
		if code != "" {
			key += " " + string(code)
		}
		c.ByStatus[key]++
		if len(e.Replies) > 1 || len(e.DeadReasons) > 1 || (len(e.DeadReasons) > 0 && status == http.StatusOK) {
			c.Duplicated++
			c.DuplicatedIDs = append(c.DuplicatedIDs, id)
		}
	}
	return c
}

// String is the counts' one-line summary.
func (c Counts) String() string {
	keys := make([]string, 0, len(c.ByStatus))
	for k := range c.ByStatus {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var by []string
	for _, k := range keys {
		by = append(by, fmt.Sprintf("%q:%d", k, c.ByStatus[k]))
	}
	return fmt.Sprintf("sent=%d acked=%d unacked=%d lost=%d duplicated=%d spliced=%d answered=%d errors=%d dead=%d replies=%d recovered=%d statuses={%s}",
		c.Sent, c.Acked, c.Unacked, c.Lost, c.Duplicated, c.Spliced, c.Answered, c.Errors, c.Dead, c.Replies, c.Recovered, strings.Join(by, " "))
}

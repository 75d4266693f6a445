package dispatcher

import (
	"bytes"
	"sync"
	"time"

	"github.com/sutazai/herd/internal/job"
)

// admittedFor is how long the ask door keeps the admission of an ask it
// stored, for the dispatcher that takes it from HERD_REQ: long enough for
// the store and the pull, short enough that what admission read (the
// workers' registrations, the breakers) is still current.
const admittedFor = 5 * time.Second

// admittedMax bounds the admissions kept: past it, asks are admitted
// again by the dispatcher that takes them.
const admittedMax = 4096

// admitted holds the admissions the ask door made of asks it stored, by
// request id, so that the dispatcher that takes one (usually this one)
// does not decode its body again. It is safe for concurrent use.
type admitted struct {
	// mu guards byID.
	mu   sync.Mutex
	byID map[string]admission
}

type admission struct {
	subject string // the subject it was stored on
	data    []byte // the body as the agent sent it
	item    job.Item
	at      time.Time
}

func newAdmitted() *admitted { return &admitted{byID: map[string]admission{}} }

// put keeps it, admitted from data and stored on subject at now.
func (a *admitted) put(subject string, data []byte, it job.Item, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.byID) >= admittedMax {
		for id, e := range a.byID {
			if now.Sub(e.at) >= admittedFor {
				delete(a.byID, id)
			}
		}
		if len(a.byID) >= admittedMax {
			return
		}
	}
	a.byID[it.ID] = admission{subject: subject, data: data, item: it, at: now}
}

// take returns and forgets the admission of request id, when it is fresh
// at now and was made of this very message: stored on subject, with this
// reply subject and body (another ask under the same id, a duplicate
// JetStream dropped, left an admission that is not this message's).
func (a *admitted) take(id, subject, reply string, data []byte, now time.Time) (job.Item, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.byID[id]
	if !ok {
		return job.Item{}, false
	}
	delete(a.byID, id)
	if e.subject != subject || e.item.Reply != reply || !bytes.Equal(e.data, data) || now.Sub(e.at) >= admittedFor {
		return job.Item{}, false
	}
	return e.item, true
}

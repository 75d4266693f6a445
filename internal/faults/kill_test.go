package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/natstest"
)

// mixedLoad is the agents' steady traffic: herd-slow generations long
// enough to be mid-flight when something dies, between quick herd-tiny
// ones, over the three priorities.
func mixedLoad(tag string) func(i int) Req {
	prios := []client.Priority{client.Normal, client.High, client.Low}
	return func(i int) Req {
		r := Req{Model: tinyModel, Prompt: fmt.Sprintf("%s %d", tag, i), Options: map[string]any{"num_predict": 8},
			Call: []client.CallOption{client.At(prios[i%3])}}
		if i%2 == 0 {
			r.Model, r.Options = slowModel, map[string]any{"num_predict": 48}
		}
		return r
	}
}

// TestWorkerKilledMidGeneration: a worker is killed with SIGKILL while it
// runs herd-slow generations, three times under load (each worker in
// turn, restarted after); the other worker or the restarted one finishes
// the work, and every acknowledged request has exactly one outcome.
func TestWorkerKilledMidGeneration(t *testing.T) {
	h := start(t, options{})
	begin := time.Now()
	l := h.Ledger()
	stop := l.Load(400*time.Millisecond, mixedLoad("kill worker"))
	for round, victim := range []string{worker1Name, worker2Name, worker1Name} {
		var cut Call
		natstest.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
			for _, c := range h.Proxy.Calls("/api/generate", slowModel) {
				if c.Worker == victim && !c.Done && time.Since(c.Start) > 300*time.Millisecond {
					cut = c
					return nil
				}
			}
			return fmt.Errorf("%s runs no herd-slow generation yet", victim)
		})
		h.Kill(victim)
		t.Logf("round %d: %s killed %v into a generation", round+1, victim, ms(time.Since(cut.Start)))
		time.Sleep(time.Second) // the load goes on without it
		h.Restart(victim)
	}
	sent := stop()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := l.Wait(ctx); err != nil {
		t.Errorf("wait: %v", err)
	}
	c := l.Check(t)
	t.Logf("worker SIGKILL x3: %d sent in %v; generate calls %v", sent, ms(time.Since(begin)), h.Proxy.Outcomes("/api/generate"))
	_ = c
}

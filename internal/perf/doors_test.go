package perf

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/stack"
	"github.com/sutazai/herd/internal/testbin"
	"github.com/sutazai/herd/internal/wire"
)

// doorsRounds is how many calls each way makes; the ways take turns, so
// that drift in Ollama's speed touches all of them alike.
const doorsRounds = 80

// doorsGoal is the most the HTTP doors may add over the NATS door.
const doorsGoal = time.Millisecond

// TestHTTPDoorsVsFloor: the p50 latency herd adds over calling Ollama
// directly, through the NATS door (herd.ask) and through the HTTP doors
// (Ollama's API, the OpenAI API), measured in one run on one managed
// Ollama, one call at a time; goal: the HTTP doors add at most 1 ms over
// the NATS door.
func TestHTTPDoorsVsFloor(t *testing.T) {
	benchOnly(t)
	bin := testbin.Ollama(t)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	mctx, stopOllama := context.WithCancel(context.Background())
	inst, err := managed.Start(mctx, managed.Config{Binary: bin, Dir: t.TempDir(), NumParallel: 1, TestModels: []string{tiny}}, log)
	if err != nil {
		stopOllama()
		t.Fatal(err)
	}
	t.Cleanup(func() { stopOllama(); _ = inst.Wait() })

	c := config.Default()
	c.Server.Listen = "127.0.0.1:-1"
	c.Server.DataDir = t.TempDir()
	c.Server.SyncAlways = false
	c.HTTP.Listen = ""
	c.Ollama.URL = inst.URL()
	c.Worker.CPUBudget = 1
	c.API.Listen = fmt.Sprintf("127.0.0.1:%d", testbin.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() { done <- stack.Up(ctx, c, log, func(url string) { ready <- url }) }()
	t.Cleanup(func() { cancel(); <-done })
	var natsURL string
	select {
	case natsURL = <-ready:
	case err := <-done:
		t.Fatalf("herd up: %v", err)
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	gw := "http://" + c.API.Listen

	body := func(i int) string {
		return fmt.Sprintf(`{"model":%q,"prompt":"door %d","stream":false,"options":{"temperature":0,"num_predict":4}}`, tiny, i)
	}
	post := func(url, b string, hdr map[string]string) error {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %d %s", url, resp.StatusCode, out)
		}
		return nil
	}
	herdHdr := map[string]string{"X-Herd-Priority": "high", "X-Herd-Cache": "off"}
	ways := []struct {
		name string
		call func(i int) error
	}{
		{"Ollama direct", func(i int) error { return post(inst.URL()+"/api/generate", body(i), nil) }},
		{"NATS door (herd.ask)", func(i int) error {
			m := nats.NewMsg(wire.AskSubject(wire.High, "bench"))
			m.Data = []byte(body(i))
			m.Header.Set(wire.HdrCache, wire.CacheOff)
			r, err := nc.RequestMsgWithContext(t.Context(), m)
			if err != nil {
				return err
			}
			if s := r.Header.Get(wire.HdrStatus); s != "200" {
				return fmt.Errorf("nats door: %s %s", s, r.Data)
			}
			return nil
		}},
		{"Ollama HTTP door", func(i int) error { return post(gw+"/api/generate", body(i), herdHdr) }},
		{"OpenAI HTTP door", func(i int) error {
			return post(gw+"/v1/completions", fmt.Sprintf(`{"model":%q,"prompt":"door %d","max_tokens":4,"temperature":0}`, tiny, i), herdHdr)
		}},
	}
	natstest.CheckFor(t, time.Minute, 50*time.Millisecond, func() error { return ways[2].call(-1) })
	lat := make([][]time.Duration, len(ways))
	for i := -5; i < doorsRounds; i++ { // five rounds of warm-up
		for w, way := range ways {
			start := time.Now()
			if err := way.call(i); err != nil {
				t.Fatalf("%s: %v", way.name, err)
			}
			if i >= 0 {
				lat[w] = append(lat[w], time.Since(start))
			}
		}
	}
	p50 := make([]time.Duration, len(ways))
	for w := range ways {
		slices.Sort(lat[w])
		p50[w] = lat[w][len(lat[w])/2]
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var b bytes.Buffer
	fmt.Fprintf(&b, "\nHTTP doors: p50 of %d sequential generate calls each (%s, num_predict 4, cache off), the ways taking turns\n", doorsRounds, tiny)
	worst := time.Duration(0)
	for w, way := range ways {
		fmt.Fprintf(&b, "  %-22s %7.2f ms", way.name, ms(p50[w]))
		if w > 0 {
			fmt.Fprintf(&b, "   adds %+6.2f ms over Ollama", ms(p50[w]-p50[0]))
		}
		if w > 1 {
			fmt.Fprintf(&b, ", %+5.2f ms over the NATS door", ms(p50[w]-p50[1]))
			worst = max(worst, p50[w]-p50[1])
		}
		b.WriteByte('\n')
	}
	verdict := "met"
	if worst > doorsGoal {
		verdict = "not met"
	}
	fmt.Fprintf(&b, "  goal: the HTTP doors add at most %v over the NATS door: %s (%+.2f ms)\n", doorsGoal, verdict, ms(worst))
	fmt.Print(b.String())
}

package loadgen

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/wire"
)

// poolSize bounds how many earlier requests a repeat pool remembers; the
// oldest are forgotten first.
const poolSize = 1024

// Options say how much traffic to generate and from which seed.
type Options struct {
	// Seed makes the traffic reproducible: the same fleet, options and
	// seed give the same records. Default 0 (itself a seed).
	Seed uint64
	// Start is the time of offset zero; each record's Time is Start plus
	// its arrival offset. Required.
	Start time.Time
	// Duration is how long the traffic lasts: arrivals in [0, Duration).
	// Required, > 0.
	Duration time.Duration
	// RateScale multiplies every profile's rate. Default 1 (0 means 1).
	RateScale float64
	// MaxRequests stops after this many records; 0 means no limit.
	MaxRequests int
}

// Stats count what a generator has produced so far.
type Stats struct {
	// Requests is the number of records produced.
	Requests int
	// Repeats is how many of them repeat an earlier request's body.
	Repeats int
	// ByPriority, ByProfile, ByModel and ByOp count records.
	ByPriority map[wire.Priority]int
	ByProfile  map[string]int
	ByModel    map[string]int
	ByOp       map[string]int
}

// Generator produces a fleet's requests in time order. Create it with New;
// it is not safe for concurrent use.
type Generator struct {
	opts     Options
	end      float64 // seconds
	profiles []*profileGen
	n        int
	stats    Stats
}

// profileGen is one profile's arrival process and state.
type profileGen struct {
	p          *Profile
	rng        *rand.Rand
	lambda     float64 // arrivals per second
	next       float64 // offset of the next arrival, seconds
	agents     []string
	priorities choice[wire.Priority]
	models     choice[string]
	ops        choice[string]
	repeat     float64
	byAgent    bool
	pools      map[string]*pool // by agent, or "" for the profile
	made       int              // fresh prompts made, for their unique tag
}

// pool is the earlier repeatable requests a repeat may copy.
type pool struct {
	entries []entry
	oldest  int // index of the oldest entry once full
	owed    int // repeats drawn while the pool was empty
}

type entry struct {
	body  json.RawMessage
	model string
	op    string
}

// choice draws keys with probability proportional to their weights; keys
// are in sorted order so draws are reproducible.
type choice[K comparable] struct {
	keys []K
	cum  []float64
}

func newChoice[K ~string](m map[K]float64, def K) choice[K] {
	if len(m) == 0 {
		return choice[K]{keys: []K{def}, cum: []float64{1}}
	}
	keys, _ := weights(m, func(K) bool { return true }, "", "")
	c := choice[K]{}
	sum := 0.0
	for _, k := range keys {
		if m[k] == 0 {
			continue
		}
		sum += m[k]
		c.keys = append(c.keys, k)
		c.cum = append(c.cum, sum)
	}
	for i := range c.cum {
		c.cum[i] /= sum
	}
	return c
}

func (c choice[K]) draw(rng *rand.Rand) K {
	u := rng.Float64()
	for i, v := range c.cum {
		if u < v {
			return c.keys[i]
		}
	}
	return c.keys[len(c.keys)-1]
}

// New returns a generator of f's traffic. It returns an error wrapping
// ErrProfile or ErrOptions when f or o cannot be used.
func New(f Fleet, o Options) (*Generator, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if o.RateScale == 0 {
		o.RateScale = 1
	}
	switch {
	case o.Start.IsZero():
		return nil, fmt.Errorf("%w: a start time is required", ErrOptions)
	case o.Duration <= 0:
		return nil, fmt.Errorf("%w: duration %v must be above 0", ErrOptions, o.Duration)
	case !(o.RateScale > 0) || math.IsInf(o.RateScale, 0):
		return nil, fmt.Errorf("%w: rate scale %v must be above 0", ErrOptions, o.RateScale)
	case o.MaxRequests < 0:
		return nil, fmt.Errorf("%w: max requests %d is below 0", ErrOptions, o.MaxRequests)
	}
	f = f.clone()
	g := &Generator{opts: o, end: o.Duration.Seconds(), stats: Stats{
		ByPriority: map[wire.Priority]int{}, ByProfile: map[string]int{},
		ByModel: map[string]int{}, ByOp: map[string]int{},
	}}
	for i := range f.Profiles {
		p := &f.Profiles[i]
		pg := &profileGen{
			p: p,
			// One stream per profile, so a profile's traffic depends only
			// on the seed and its position in the fleet.
			rng:        rand.New(rand.NewPCG(o.Seed, 0x9E3779B97F4A7C15*uint64(i+1))),
			lambda:     float64(p.Agents*max(p.Concurrency, 1)) * p.Rate * o.RateScale,
			priorities: newChoice(p.Priorities, wire.Normal),
			models:     newChoice(p.Models, ""),
			ops:        newChoice(p.Ops, OpGenerate),
			repeat:     f.repeatRatio(p),
			byAgent:    p.RepeatScope == ScopeAgent,
			pools:      map[string]*pool{},
		}
		for a := 1; a <= p.Agents; a++ {
			pg.agents = append(pg.agents, agentName(p.Name, a, p.Agents))
		}
		pg.next = pg.rng.ExpFloat64() / pg.lambda
		g.profiles = append(g.profiles, pg)
	}
	return g, nil
}

// Next returns the next request in time order, or false when the duration
// (or MaxRequests) is reached. Ties in time go to the earlier profile.
func (g *Generator) Next() (capture.Record, bool) {
	if g.opts.MaxRequests > 0 && g.n >= g.opts.MaxRequests {
		return capture.Record{}, false
	}
	var pg *profileGen
	for _, c := range g.profiles {
		if c.next < g.end && (pg == nil || c.next < pg.next) {
			pg = c
		}
	}
	if pg == nil {
		return capture.Record{}, false
	}
	at := pg.next
	pg.next += pg.rng.ExpFloat64() / pg.lambda
	g.n++
	rec, repeated := pg.request(g.opts.Start.Add(time.Duration(at*float64(time.Second))), fmt.Sprintf("lg-%x-%d", g.opts.Seed, g.n))
	g.stats.Requests++
	if repeated {
		g.stats.Repeats++
	}
	g.stats.ByPriority[rec.Priority]++
	g.stats.ByProfile[pg.p.Name]++
	g.stats.ByModel[rec.Model]++
	g.stats.ByOp[rec.Op]++
	return rec, true
}

// Stats returns counts of what Next has produced so far. The maps are the
// generator's own; copy them to keep them across later calls to Next.
func (g *Generator) Stats() Stats { return g.stats }

// Generate returns all of f's requests for o, in time order.
func Generate(f Fleet, o Options) ([]capture.Record, error) {
	g, err := New(f, o)
	if err != nil {
		return nil, err
	}
	var out []capture.Record
	for {
		rec, ok := g.Next()
		if !ok {
			return out, nil
		}
		out = append(out, rec)
	}
}

// request makes the profile's next request, at t with id. It reports
// whether the request repeats an earlier one.
func (pg *profileGen) request(t time.Time, id string) (capture.Record, bool) {
	rng := pg.rng
	agent := pg.agents[rng.IntN(len(pg.agents))]
	rec := capture.Record{Time: t, ID: id, Priority: pg.priorities.draw(rng), Agent: agent}
	if pg.p.Timeout > 0 {
		rec.Headers = map[string]string{wire.HdrTimeout: pg.p.Timeout.String()}
	}
	key := ""
	if pg.byAgent {
		key = agent
	}
	pl := pg.pools[key]
	if pl == nil {
		pl = &pool{}
		pg.pools[key] = pl
	}
	wantRepeat := rng.Float64() < pg.repeat
	switch {
	case len(pl.entries) > 0 && (wantRepeat || pl.owed > 0):
		if !wantRepeat {
			pl.owed--
		}
		e := pl.entries[rng.IntN(len(pl.entries))]
		rec.Model, rec.Op, rec.Body = e.model, e.op, e.body
		return rec, true
	case wantRepeat:
		pl.owed++
	}
	e, repeatable := pg.fresh(agent)
	rec.Model, rec.Op, rec.Body = e.model, e.op, e.body
	if repeatable && pg.repeat > 0 {
		pl.add(e)
	}
	return rec, false
}

// fresh makes a new request body. It reports whether the body may be
// repeated (temperature 0 or an embedding).
func (pg *profileGen) fresh(agent string) (entry, bool) {
	rng, p := pg.rng, pg.p
	pg.made++
	model := pg.models.draw(rng)
	op := pg.ops.draw(rng)
	prompt := fmt.Sprintf("[%s #%d] %s", agent, pg.made, words(rng, pg.promptWords(rng)))
	body := requestBody{Model: model}
	repeatable := true
	if op == OpEmbed {
		body.Input = prompt
	} else {
		opts := &options{NumPredict: p.NumPredict, NumCtx: p.NumCtx}
		if p.Sampled > 0 && rng.Float64() < p.Sampled {
			opts.Temperature, repeatable = p.Temperature, false
		}
		body.Options = opts
		if op == OpChat {
			if p.System != "" {
				body.Messages = append(body.Messages, message{Role: "system", Content: p.System})
			}
			body.Messages = append(body.Messages, message{Role: "user", Content: prompt})
		} else {
			body.Prompt, body.System = prompt, p.System
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		panic(err) // strings and numbers only: cannot fail
	}
	return entry{body: b, model: model, op: op}, repeatable
}

// promptWords draws a prompt length from the profile's lognormal.
func (pg *profileGen) promptWords(rng *rand.Rand) int {
	w := pg.p.PromptWords
	lo, hi := max(w.Min, 1), w.Max
	if hi == 0 {
		hi = max(int(math.Ceil(10*w.Median)), lo)
	}
	n := int(math.Round(w.Median * math.Exp(w.Sigma*rng.NormFloat64())))
	return min(max(n, lo), hi)
}

func (pl *pool) add(e entry) {
	if len(pl.entries) < poolSize {
		pl.entries = append(pl.entries, e)
		return
	}
	pl.entries[pl.oldest] = e
	pl.oldest = (pl.oldest + 1) % poolSize
}

// requestBody is the JSON of an Ollama generate, chat or embed request,
// with fields in a fixed order so bodies are reproducible.
type requestBody struct {
	Model    string    `json:"model"`
	Prompt   string    `json:"prompt,omitempty"`
	System   string    `json:"system,omitempty"`
	Messages []message `json:"messages,omitempty"`
	Input    string    `json:"input,omitempty"`
	Options  *options  `json:"options,omitempty"`
}

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// options always carries temperature, so a repeatable request says it is
// at temperature 0.
type options struct {
	Temperature float64 `json:"temperature"`
	NumPredict  int     `json:"num_predict,omitempty"`
	NumCtx      int     `json:"num_ctx,omitempty"`
}

// words returns n words drawn from the vocabulary.
func words(rng *rand.Rand, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(vocabulary[rng.IntN(len(vocabulary))])
	}
	return b.String()
}

// Package queuestats reports the request queues (the HERD_REQ consumers,
// one per priority) to Prometheus: how many requests wait, how many were
// redelivered and how old the oldest waiting one is.
//
// The values are read from JetStream on every scrape (a
// prometheus.Collector), so they are never stale and cost nothing between
// scrapes. Every process that registers the collector reports the same
// cluster-wide values: aggregate with max, not sum.
package queuestats

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sutazai/herd/internal/wire"
)

// DefaultTimeout bounds one scrape's JetStream calls.
const DefaultTimeout = 2 * time.Second

// Collector is a prometheus.Collector for the HERD_REQ consumers. Create it
// with New.
type Collector struct {
	js      jetstream.JetStream
	timeout time.Duration
	now     func() time.Time

	depth, redelivered, oldest, failures *prometheus.Desc
	failed                               atomic.Uint64

	// mu guards stream, the HERD_REQ handle kept between scrapes.
	mu     sync.Mutex
	stream jetstream.Stream
}

// New returns a collector reading the HERD_REQ consumers through js. A
// scrape waits at most timeout (DefaultTimeout when zero or less) for
// JetStream; a priority whose consumer cannot be read in time is left out
// of that scrape and counted in herd_queue_stats_failures_total.
func New(js jetstream.JetStream, timeout time.Duration) *Collector {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	p := []string{"priority"}
	return &Collector{
		js: js, timeout: timeout, now: time.Now,
		depth: prometheus.NewDesc("herd_queue_depth",
			"Requests in HERD_REQ not yet settled by a dispatcher, by priority: waiting for delivery plus delivered and not acknowledged (including coalesced requests held for a leader's answer).", p, nil),
		redelivered: prometheus.NewDesc("herd_queue_redelivered",
			"Requests of the priority delivered more than once and not yet acknowledged.", p, nil),
		oldest: prometheus.NewDesc("herd_queue_oldest_age_seconds",
			"Age of the oldest request of the priority not yet acknowledged; 0 when none waits.", p, nil),
		failures: prometheus.NewDesc("herd_queue_stats_failures_total",
			"Consumer reads that failed or timed out during scrapes (the priority was left out of that scrape).", nil, nil),
	}
}

// Describe sends the descriptors of the metrics Collect reports.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.redelivered
	ch <- c.oldest
	ch <- c.failures
}

// Collect reads the three consumers in parallel and reports them; it
// returns within the collector's timeout.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range wire.Priorities {
		wg.Go(func() {
			s, err := c.read(ctx, p)
			if err != nil {
				c.failed.Add(1)
				return
			}
			l := string(p)
			ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(s.depth), l)
			ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(s.redelivered), l)
			ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, s.oldest.Seconds(), l)
		})
	}
	wg.Wait()
	ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(c.failed.Load()))
}

type stats struct {
	depth, redelivered uint64
	oldest             time.Duration
}

// read returns the state of priority p's consumer.
func (c *Collector) read(ctx context.Context, p wire.Priority) (stats, error) {
	cons, err := c.js.Consumer(ctx, wire.StreamReq, wire.ReqConsumerName(p))
	if err != nil {
		return stats{}, err
	}
	info := cons.CachedInfo()
	s := stats{depth: info.NumPending + uint64(info.NumAckPending), redelivered: uint64(info.NumRedelivered)}
	if s.depth == 0 {
		return s, nil
	}
	str, err := c.reqStream(ctx)
	if err != nil {
		return stats{}, err
	}
	// The first message of this consumer's subjects after its ack floor is
	// the oldest one it has not settled.
	var opts []jetstream.GetMsgOpt
	if f := info.Config.FilterSubject; f != "" {
		opts = append(opts, jetstream.WithGetMsgSubject(f))
	}
	msg, err := str.GetMsg(ctx, info.AckFloor.Stream+1, opts...)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return s, nil // settled between the two reads
	}
	if err != nil {
		return stats{}, err
	}
	s.oldest = max(c.now().Sub(msg.Time), 0)
	return s, nil
}

func (c *Collector) reqStream(ctx context.Context) (jetstream.Stream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stream != nil {
		return c.stream, nil
	}
	str, err := c.js.Stream(ctx, wire.StreamReq)
	if err != nil {
		return nil, err
	}
	c.stream = str
	return str, nil
}

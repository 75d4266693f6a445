package capture

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/ops"
)

// The dispatcher's capture metrics (internal/dispatcher registers them).
const (
	MetricRecords = "herd_capture_records_total"
	MetricDropped = "herd_capture_dropped_total"
	MetricEnabled = "herd_capture_enabled"
)

// Counters are a dispatcher's capture figures, read from its /metrics.
type Counters struct {
	// Written and Dropped count records handed to JetStream and dropped.
	Written, Dropped int64
	// Enabled reports whether the dispatcher records requests now.
	Enabled bool
}

// ScrapeCounters reads the capture counters from the /metrics at url,
// waiting at most two seconds. It returns an error when the endpoint does
// not answer or has no capture metrics (it is not a dispatcher's).
func ScrapeCounters(ctx context.Context, url string) (Counters, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	mfs, err := ops.Scrape(ctx, url)
	if err != nil {
		return Counters{}, err
	}
	written, ok := ops.Value(mfs, MetricRecords)
	if !ok {
		return Counters{}, fmt.Errorf("%s has no herd_capture metrics (not a dispatcher?)", url)
	}
	dropped, _ := ops.Value(mfs, MetricDropped)
	enabled, _ := ops.Value(mfs, MetricEnabled)
	return Counters{Written: int64(written), Dropped: int64(dropped), Enabled: enabled == 1}, nil
}

// MetricsURL returns the /metrics URL of a process listening on the
// http.listen address listen, on loopback when it listens on every
// interface; "" when listen has no port.
func MetricsURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "" {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/metrics"
}

// RecordTime returns the original time of the record at seq in st, or the
// time it was stored when the message is not a record.
func RecordTime(ctx context.Context, st jetstream.Stream, seq uint64) (time.Time, error) {
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		return time.Time{}, fmt.Errorf("read record %d: %w", seq, err)
	}
	var rec Record
	if json.Unmarshal(m.Data, &rec) == nil && !rec.Time.IsZero() {
		return rec.Time, nil
	}
	return m.Time, nil
}

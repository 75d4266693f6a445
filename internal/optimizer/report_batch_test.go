package optimizer

import (
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/events"
)

func TestBatchRecommend(t *testing.T) {
	batches := func(sizes ...int) []events.Batch {
		var out []events.Batch
		for _, s := range sizes {
			out = append(out, events.Batch{Model: "m", Size: s})
		}
		return out
	}
	tests := []struct {
		name       string
		batches    []events.Batch
		size, wait string // recommended; "" keeps
		reason     string
	}{
		{name: "no batches", reason: "no batches"},
		{name: "mostly full: larger batches", batches: batches(8, 8, 8, 3), size: "16", reason: "75% of 4 batches were full"},
		{name: "form but close early: longer wait", batches: batches(2, 3, 2, 3), wait: "10ms", reason: "close 31% full"},
		{name: "one at a time: keep", batches: batches(1, 1, 1, 2), reason: "one at a time"},
		{name: "half full: keep", batches: batches(4, 5, 4, 5), reason: "56% full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := BuildBatchReport(tt.batches, nil, 8, 5*time.Millisecond)
			recs := r.Recommend()
			if len(recs) != 2 || recs[0].Setting != "dispatcher.batch_size" || recs[1].Setting != "dispatcher.max_wait" {
				t.Fatalf("recommendations %+v", recs)
			}
			size, wait := recs[0], recs[1]
			if (tt.size != "") != size.Change || (tt.size != "" && size.Recommended != tt.size) {
				t.Errorf("batch_size %+v, want %q", size, tt.size)
			}
			if (tt.wait != "") != wait.Change || (tt.wait != "" && wait.Recommended != tt.wait) {
				t.Errorf("max_wait %+v, want %q", wait, tt.wait)
			}
			if !strings.Contains(size.Reason+" | "+wait.Reason, tt.reason) {
				t.Errorf("reasons %q | %q, want %q", size.Reason, wait.Reason, tt.reason)
			}
		})
	}
}

package sched

import (
	"slices"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/wire"
)

func TestOrderAgeing(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := New(DefaultConfig(), t0)
	steps := []struct {
		at     time.Duration
		served []wire.Priority
		want   []wire.Priority
	}{
		{0, nil, []wire.Priority{wire.High, wire.Normal, wire.Low}},
		{500 * time.Millisecond, []wire.Priority{wire.High}, []wire.Priority{wire.High, wire.Normal, wire.Low}},
		{1100 * time.Millisecond, nil, []wire.Priority{wire.Normal, wire.High, wire.Low}},
		{1200 * time.Millisecond, []wire.Priority{wire.Normal}, []wire.Priority{wire.High, wire.Normal, wire.Low}},
		{2100 * time.Millisecond, []wire.Priority{wire.Normal}, []wire.Priority{wire.High, wire.Normal, wire.Low}},
		{3000 * time.Millisecond, nil, []wire.Priority{wire.Low, wire.High, wire.Normal}},
		{3500 * time.Millisecond, nil, []wire.Priority{wire.Low, wire.Normal, wire.High}},
		{3600 * time.Millisecond, []wire.Priority{wire.Low}, []wire.Priority{wire.Normal, wire.High, wire.Low}},
		{3700 * time.Millisecond, []wire.Priority{wire.Normal}, []wire.Priority{wire.High, wire.Normal, wire.Low}},
	}
	for _, s := range steps {
		now := t0.Add(s.at)
		for _, pr := range s.served {
			p.Served(pr, now)
		}
		if got := p.Order(now); !slices.Equal(got, s.want) {
			t.Fatalf("at %v Order = %v, want %v", s.at, got, s.want)
		}
	}
}

func TestSlotsFree(t *testing.T) {
	s := Slots{Total: 4, ReservedHigh: 1}
	tests := []struct {
		pr               wire.Priority
		busy, busyShared int
		want             int
	}{
		{wire.High, 0, 0, 4},
		{wire.Low, 0, 0, 3},
		{wire.Low, 3, 3, 0},
		{wire.High, 3, 3, 1},
		{wire.Normal, 2, 1, 2},
		{wire.High, 4, 3, 0},
	}
	for _, tt := range tests {
		if got := s.Free(tt.pr, tt.busy, tt.busyShared); got != tt.want {
			t.Errorf("Free(%s, %d, %d) = %d, want %d", tt.pr, tt.busy, tt.busyShared, got, tt.want)
		}
	}
}

package config

import (
	"testing"
	"time"

	"github.com/sutazai/herd/internal/policy"
)

// TestPreloadSetting: optimizer.preload is read from the file and the
// environment (issue 16, item 3): its defaults are policy's, lead 0 turns
// preloading off, and min_bursts below 2 is refused by its key.
func TestPreloadSetting(t *testing.T) {
	clearEnv(t)
	if got, want := Default().Optimizer.Preload, policy.DefaultRhythmConfig(); got != want {
		t.Errorf("default optimizer.preload = %+v, want policy's %+v", got, want)
	}
	c := mustLoad(t, writeFile(t, "optimizer:\n  preload:\n    idle_gap: 2m\n    lead: 0s\n"), nil)
	want := policy.DefaultRhythmConfig()
	want.IdleGap, want.Lead = 2*time.Minute, 0
	if c.Optimizer.Preload != want {
		t.Errorf("file: optimizer.preload = %+v, want %+v", c.Optimizer.Preload, want)
	}
	_, err := Load("", map[string]any{"optimizer.preload.min_bursts": 1})
	keyError(t, err, "optimizer.preload.min_bursts")
	t.Setenv("HERD_OPTIMIZER__PRELOAD__TOLERANCE", "0.3")
	if c = mustLoad(t, "", nil); c.Optimizer.Preload.Tolerance != 0.3 {
		t.Errorf("environment: optimizer.preload.tolerance = %v, want 0.3", c.Optimizer.Preload.Tolerance)
	}
}

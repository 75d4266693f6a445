package config

import (
	"strings"
	"testing"

	"github.com/sutazai/herd/internal/request"
)

// TestRunnerPolicy: dispatcher.runner_options, dispatcher.max_predict and
// models[].max_predict reach the dispatcher and the worker as one policy,
// and values that cannot work name their key.
func TestRunnerPolicy(t *testing.T) {
	c, err := load("", map[string]any{
		"dispatcher.runner_options": "refuse",
		"dispatcher.max_predict":    512,
		"models": []any{
			map[string]any{"name": "big", "num_ctx": 4096, "max_predict": 8192},
			map[string]any{"name": "small", "num_ctx": 2048},
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := request.Runner{Mode: request.RunnerRefuse, MaxPredict: map[string]int{"big": 8192}, DefaultMaxPredict: 512}
	for who, got := range map[string]request.Runner{"dispatcher": c.Dispatcher.Runner(), "worker": c.Worker.Runner} {
		if got.Mode != want.Mode || got.DefaultMaxPredict != want.DefaultMaxPredict || len(got.MaxPredict) != 1 || got.MaxPredict["big"] != 8192 {
			t.Errorf("%s's policy %+v, want %+v", who, got, want)
		}
	}
	if d := Default(); d.Worker.Runner.Mode != request.RunnerReplace || d.Worker.Runner.Cap("herd-tiny") != 2048 {
		t.Errorf("default policy %+v, want replace with a cap of 2048", d.Worker.Runner)
	}
	for _, tt := range []struct {
		flags map[string]any
		key   string
	}{
		{map[string]any{"dispatcher.runner_options": "ignore"}, "dispatcher.runner_options"},
		{map[string]any{"dispatcher.max_predict": -1}, "dispatcher.max_predict"},
		{map[string]any{"models": []any{map[string]any{"name": "m", "num_ctx": 2048, "max_predict": -5}}}, "models[0].max_predict"},
	} {
		_, err := load("", tt.flags, nil)
		if err == nil || !strings.Contains(err.Error(), tt.key) {
			t.Errorf("%v: %v, want an error naming %s", tt.flags, err, tt.key)
		}
	}
}

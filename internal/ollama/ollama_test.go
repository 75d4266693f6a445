package ollama_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/wire"
)

func TestClassify(t *testing.T) {
	fake := ollamatest.New(t, ollamatest.WithModels("tiny"))
	c, err := ollama.NewClient(fake.URL, 0)
	if err != nil {
		t.Fatal(err)
	}
	gen := func(model string) error {
		f := false
		return c.Generate(t.Context(), &api.GenerateRequest{Model: model, Prompt: "hi", Stream: &f}, func(api.GenerateResponse) error { return nil })
	}
	if err := gen("tiny"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		setup     func()
		model     string
		code      wire.Code
		retryable bool
	}{
		{"unknown model", func() {}, "nope", wire.CodeModelNotFound, false},
		{"busy", func() { fake.FailNext(1, 503) }, "tiny", wire.CodeBackendUnavailable, true},
		{"crash", func() { fake.FailNext(1, 500) }, "tiny", wire.CodeBackendUnavailable, true},
		{"bad request", func() { fake.FailNext(1, 400) }, "tiny", wire.CodeInvalidRequest, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			err := gen(tt.model)
			var se *ollama.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T) has no status", err, err)
			}
			code, retry := ollama.Classify(err)
			if code != tt.code || retry != tt.retryable {
				t.Fatalf("Classify(%v) = %s, %v; want %s, %v", err, code, retry, tt.code, tt.retryable)
			}
		})
	}
	dead, _ := ollama.NewClient("127.0.0.1:1", 0)
	f := false
	err = dead.Generate(context.Background(), &api.GenerateRequest{Model: "tiny", Prompt: "x", Stream: &f}, func(api.GenerateResponse) error { return nil })
	if code, retry := ollama.Classify(err); code != wire.CodeBackendUnavailable || !retry {
		t.Fatalf("connection refused: Classify = %s %v (%v)", code, retry, err)
	}
	if code, _ := ollama.Classify(fmt.Errorf("call: %w", context.Canceled)); code != wire.CodeCanceled {
		t.Fatalf("canceled: %s", code)
	}
}

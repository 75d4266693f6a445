package cli

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestTogether: the first function to return ends the others' context,
// and the first error is returned even when a nil came first.
func TestTogether(t *testing.T) {
	boom := errors.New("boom")
	wait := func(ctx context.Context) error { <-ctx.Done(); return nil }
	for _, tc := range []struct {
		name string
		fs   []func(context.Context) error
		want error
	}{
		{"one fails", []func(context.Context) error{wait, func(context.Context) error { return boom }}, boom},
		{"one ends", []func(context.Context) error{wait, func(context.Context) error { return nil }}, nil},
		{"error after nil", []func(context.Context) error{
			func(context.Context) error { return nil },
			func(ctx context.Context) error { <-ctx.Done(); return boom },
		}, boom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := Together(ctx, tc.fs...); !errors.Is(err, tc.want) {
				t.Fatalf("Together = %v, want %v", err, tc.want)
			}
			if ctx.Err() != nil {
				t.Fatal("Together waited for the timeout")
			}
		})
	}
}

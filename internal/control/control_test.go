package control

import "testing"

func TestBreakerKeyRoundTrip(t *testing.T) {
	for _, m := range []string{"llama3.2:3b", "hf.co/a/b:Q4_K_M", "herd-tiny"} {
		got, ok := ModelFromBreakerKey(BreakerKey(m))
		if !ok || got != m {
			t.Fatalf("%q -> %q -> %q, %v", m, BreakerKey(m), got, ok)
		}
	}
	if _, ok := ModelFromBreakerKey("workers.w1"); ok {
		t.Fatal("a worker key read as a breaker key")
	}
}

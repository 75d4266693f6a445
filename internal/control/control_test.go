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

func TestKeepAliveKeyRoundTrip(t *testing.T) {
	got, ok := ModelFromKeepAliveKey(KeepAliveKey("llama3.2:3b"))
	if !ok || got != "llama3.2:3b" {
		t.Fatalf("got %q %v", got, ok)
	}
	if _, ok := ModelFromKeepAliveKey(BreakerKey("x")); ok {
		t.Fatal("a breaker key read as a keep_alive key")
	}
}

func TestBudgetShare(t *testing.T) {
	b := Budget{Total: 4, Slots: map[string]int{"a": 3, "b": 1, "z": 0}}
	for _, tc := range []struct {
		model         string
		slots         int
		cores         float64
		calls, cores2 int
		ok            bool
	}{
		{"a", 4, 4, 3, 3, true},
		{"b", 4, 4, 1, 1, true},
		{"a", 2, 2, 2, 1, true}, // a worker with half the fleet's slots
		{"z", 4, 4, 1, 1, true}, // never below one call and one thread
		{"c", 4, 4, 0, 0, false},
	} {
		calls, threads, ok := b.Share(tc.model, tc.slots, tc.cores)
		if calls != tc.calls || threads != tc.cores2 || ok != tc.ok {
			t.Errorf("%s on %d slots, %g cores: %d calls, %d threads, %v; want %d, %d, %v",
				tc.model, tc.slots, tc.cores, calls, threads, ok, tc.calls, tc.cores2, tc.ok)
		}
	}
}

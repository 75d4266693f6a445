package batch

import (
	"testing"
	"time"
)

func TestBatcher(t *testing.T) {
	t0 := time.Unix(0, 0)
	b := New[string, int](3, 10*time.Millisecond)
	if _, ok := b.UntilNext(t0); ok {
		t.Fatal("empty batcher has a due batch")
	}
	b.Add(t0, "a", 1)
	b.Add(t0.Add(2*time.Millisecond), "b", 10)
	b.Add(t0.Add(3*time.Millisecond), "a", 2)
	if d, ok := b.UntilNext(t0.Add(4 * time.Millisecond)); !ok || d != 6*time.Millisecond {
		t.Fatalf("UntilNext = %v, %v; want 6ms", d, ok)
	}
	full, ok := b.Add(t0.Add(5*time.Millisecond), "a", 3)
	if !ok || full.Key != "a" || len(full.Items) != 3 || full.Items[2] != 3 {
		t.Fatalf("third item did not close batch a: %+v %v", full, ok)
	}
	if due := b.Due(t0.Add(11 * time.Millisecond)); len(due) != 0 {
		t.Fatalf("batch b due too early: %+v", due)
	}
	due := b.Due(t0.Add(12 * time.Millisecond))
	if len(due) != 1 || due[0].Key != "b" || due[0].Items[0] != 10 {
		t.Fatalf("Due = %+v", due)
	}
	b.Add(t0, "c", 7)
	b.Add(t0, "c", 8)
	if it, ok := b.Remove(func(i int) bool { return i == 7 }); !ok || it != 7 || b.Len() != 1 {
		t.Fatalf("Remove = %v %v, Len %d", it, ok, b.Len())
	}
	if fl := b.Flush(); len(fl) != 1 || len(fl[0].Items) != 1 || b.Len() != 0 {
		t.Fatalf("Flush = %+v", fl)
	}
}

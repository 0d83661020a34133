package client

import (
	"testing"
	"time"
)

func TestBackoffFullJitterCapped(t *testing.T) {
	min, max := 100*time.Millisecond, 30*time.Second
	top := func(k int64) int64 { return k - 1 } // the largest draw
	for n, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond,
		400 * time.Millisecond, 800 * time.Millisecond} {
		if got := backoff(min, max, n, top); got != want {
			t.Errorf("attempt %d: ceiling %v, want %v", n, got, want)
		}
	}
	for _, n := range []int{9, 10, 40, 63, 64, 1000} {
		if got := backoff(min, max, n, top); got != max {
			t.Errorf("attempt %d: ceiling %v, want the cap %v", n, got, max)
		}
	}
	if got := backoff(min, max, 5, func(int64) int64 { return 0 }); got != 0 {
		t.Errorf("smallest draw = %v, want 0", got)
	}
}

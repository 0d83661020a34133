package watch

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func ms(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

func TestDebouncerSettlesAfterQuiet(t *testing.T) {
	d := newDebouncer(50*time.Millisecond, time.Second)
	d.touch("a", ms(0))
	d.touch("a", ms(30))
	if at, ok := d.next(); !ok || !at.Equal(ms(50)) {
		t.Fatalf("next = %v %v, want the first deadline at 50ms", at, ok)
	}
	d.flush(ms(50)) // a was touched at 30: not quiet yet
	if d.hasReady() {
		t.Fatalf("reported before settling: %v", d.peek())
	}
	if at, _ := d.next(); !at.Equal(ms(80)) {
		t.Fatalf("next = %v, want 80ms", at.Sub(t0))
	}
	d.flush(ms(80))
	if ev := d.peek(); !slices.Equal(ev.Paths, []string{"a"}) || ev.Rescan {
		t.Fatalf("got %+v, want a", ev)
	}
	d.take()
	if d.hasReady() {
		t.Fatal("take left something ready")
	}
	if _, ok := d.next(); ok {
		t.Fatal("nothing pending, yet a deadline")
	}
}

func TestDebouncerMaxDelay(t *testing.T) {
	d := newDebouncer(50*time.Millisecond, 200*time.Millisecond)
	for n := 0; n <= 400; n += 10 {
		d.touch("hot", ms(n))
		d.touch(fmt.Sprint("cold", n), ms(n))
		for at, ok := d.next(); ok && !at.After(ms(n)); at, ok = d.next() {
			d.flush(at)
		}
		if n < 200 && slices.Contains(d.peek().Paths, "hot") {
			t.Fatalf("hot reported at %dms, before MaxDelay", n)
		}
		if n >= 200 && n < 400 {
			if !slices.Contains(d.peek().Paths, "hot") {
				t.Fatalf("hot not reported at %dms, past MaxDelay", n)
			}
		}
		if n == 390 {
			d.take() // the consumer reads; a new burst starts at 400
		}
	}
	if slices.Contains(d.peek().Paths, "hot") {
		t.Fatal("a new burst was reported at once")
	}
	// cold0 settled at 50ms; cold350 (touched at 350) settles at 400.
	ev := d.peek()
	if slices.Contains(ev.Paths, "cold360") || !slices.Contains(ev.Paths, "cold350") {
		t.Fatalf("wrong cold paths at 400ms: %v", ev.Paths)
	}
}

func TestDebouncerMergesUntilTaken(t *testing.T) {
	d := newDebouncer(10*time.Millisecond, time.Second)
	d.touch("a", ms(0))
	d.flush(ms(10))
	ev := d.peek()
	d.touch("a", ms(20))
	d.touch("b", ms(20))
	d.flush(ms(40))
	d.rescan = true
	got := d.peek()
	if !slices.Equal(got.Paths, []string{"a", "b"}) || !got.Rescan {
		t.Fatalf("merged event %+v, want a, b and rescan", got)
	}
	d.take()
	if !slices.Equal(ev.Paths, []string{"a"}) {
		t.Fatalf("an earlier peek changed under the consumer: %v", ev.Paths)
	}
	d.touch("c", ms(50))
	d.flush(ms(60))
	if got := d.peek(); !slices.Equal(got.Paths, []string{"c"}) || got.Rescan {
		t.Fatalf("after take: %+v, want just c", got)
	}
}

func TestDebouncerManyPaths(t *testing.T) {
	d := newDebouncer(50*time.Millisecond, time.Second)
	const n = 100000
	for i := range n {
		d.touch(fmt.Sprint(i%(n/2)), ms(i/1000))
	}
	d.flush(ms(n/1000 + 50))
	if got := len(d.peek().Paths); got != n/2 {
		t.Fatalf("%d paths ready, want %d", got, n/2)
	}
	if _, ok := d.next(); ok || len(d.pending) != 0 {
		t.Fatal("pending left after everything settled")
	}
}

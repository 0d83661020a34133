package main

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/synkfs/synkfs/replica"
)

// eventBurst is how many record events a second get a log line each.
const eventBurst = 20

// eventLog writes the records that flow (staged, pushed, pulled) to the
// log, one line each up to eventBurst a second. Beyond that it counts them
// and writes one summary line a second, so that an initial sync of 100,000
// records or a bulk edit does not print a line per record. Conflicts,
// refusals, bad files and held-back deletes are logged by the replica
// itself, always. Close writes what is still counted.
type eventLog struct {
	log *slog.Logger

	mu      sync.Mutex
	window  time.Time // start of the current second
	lines   int       // lines written in it
	skipped map[replica.EventKind]int
	timer   *time.Timer // writes the summary once the second is over
}

func newEventLog(log *slog.Logger) *eventLog {
	return &eventLog{log: log, skipped: map[replica.EventKind]int{}}
}

// event is a replica.Options.OnEvent.
func (l *eventLog) event(ev replica.Event) {
	switch ev.Kind {
	case replica.EventStaged, replica.EventPushed, replica.EventPulled:
	default:
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); now.Sub(l.window) >= time.Second {
		l.window, l.lines = now, 0
	}
	if l.lines < eventBurst {
		l.lines++
		attrs := []any{"record", ev.Key.Path(), "path", ev.Path}
		if ev.Deleted {
			attrs = append(attrs, "deleted", true)
		}
		if ev.Message != "" {
			attrs = append(attrs, "detail", ev.Message)
		}
		l.log.Info(string(ev.Kind), attrs...)
		return
	}
	l.skipped[ev.Kind]++
	if l.timer == nil {
		l.timer = time.AfterFunc(time.Second, l.Close)
	}
}

// Close writes the summary of the records counted but not logged.
func (l *eventLog) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if len(l.skipped) == 0 {
		return
	}
	attrs := []any{}
	for _, k := range []replica.EventKind{replica.EventStaged, replica.EventPushed, replica.EventPulled} {
		if n := l.skipped[k]; n > 0 {
			attrs = append(attrs, string(k), n)
		}
	}
	clear(l.skipped)
	l.log.Info(fmt.Sprintf("more records than %d a second: counted, not listed (synkfs status shows what is pending)", eventBurst), attrs...)
}

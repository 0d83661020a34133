package fsstore

import (
	"log/slog"
	"os"
	"testing"
)

// TestMain keeps the stores' recovery and housekeeping logs (replays,
// leftover temp files, injected write failures) out of the test output:
// tests that check a log line give the store a logger of their own.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

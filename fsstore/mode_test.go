package fsstore

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/synkfs/synkfs"
)

// A record file is the user's file: it gets the mode any program's new
// file gets (0666 less the umask), not a temporary file's 0600.
func TestRecordFileMode(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	s, err := Open(dir, &Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := synkfs.Record{Key: synkfs.Key{Type: "t", ID: "1"}, Version: 1, Body: []byte(`{"a":1}`)}
	if err := s.Apply(context.Background(), synkfs.Batch{Version: 1, Puts: []synkfs.Record{rec}}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "t", "1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o644 {
		t.Errorf("record file mode %v, want -rw-r--r--", got)
	}
}

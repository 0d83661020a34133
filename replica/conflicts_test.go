package replica

import (
	"path"
	"strings"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
)

// FuzzConflictName: any file name either is not a conflict copy or parses
// to an id; and a conflict copy named for any key parses back to that key.
func FuzzConflictName(f *testing.F) {
	f.Add("1.conflict-host-20260102T030405.json", "notes", "1")
	f.Add("a.b.conflict-x-y-20260102T030405-2.json", "t", "a.b")
	f.Add("%2Ex.conflict--20260102T030405.json", "t", ".x")
	f.Add("plain.json", "t", "id.conflict-h-20260102T030405")
	f.Fuzz(func(t *testing.T, name, typ, id string) {
		if got, _, ok := parseConflictName(name); ok {
			if !IsConflictCopy(name) {
				t.Fatalf("%q parsed but is not a conflict copy", name)
			}
			if fsstore.EscapeName(got) == "" {
				t.Fatalf("%q parsed to an empty id", name)
			}
		}
		k := synkfs.Key{Type: typ, ID: id}
		rel, err := fsstore.KeyPath(k)
		if err != nil {
			return
		}
		when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		copyName := strings.TrimSuffix(path.Base(rel), fsstore.Ext) + ".conflict-" + "host" + "-" + when.Format(timeLayout) + fsstore.Ext
		gotID, gotTime, ok := parseConflictName(copyName)
		if !ok || gotID != id || !gotTime.Equal(when) {
			t.Fatalf("%q: got %q %v %v, want %q", copyName, gotID, gotTime, ok, id)
		}
	})
}

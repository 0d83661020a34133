package replica

import (
	"path/filepath"
	"testing"
)

// TestResetServerKeepsDeleteOfNewHistory: after the server restarts empty
// (a new epoch), one replica sends its records again and then deletes one;
// a second replica that reconnects later finds the record missing from the
// snapshot and sends it again too, but the server holds a tombstone for it
// in the new history. An unedited copy must not bring the deleted record
// back, whatever the conflict strategy; a copy edited since its base is a
// conflict (delete against edit) settled by the strategy.
func TestResetServerKeepsDeleteOfNewHistory(t *testing.T) {
	for _, strategy := range []Strategy{Merge, KeepBoth, ServerWins, ClientWins} {
		t.Run(string(strategy), func(t *testing.T) {
			srv := newServer(t)
			a := newSide(t, srv.url, &Options{OnConflict: strategy})
			b := newSide(t, srv.url, &Options{OnConflict: strategy})
			a.write("n/gone.json", `{"v":"old"}`)
			a.write("n/edited.json", `{"v":"old"}`)
			a.write("n/kept.json", `{"v":"kept"}`)
			a.sync()
			b.sync()
			b.write("n/edited.json", `{"v":"edited by b offline"}`)

			// The server restarts in memory: a new epoch, no records.
			srv2 := newServer(t)
			a.url, b.url = srv2.url, srv2.url
			a.reopen(Options{OnConflict: strategy})
			a.sync() // sends its records again
			a.remove("n/gone.json")
			a.remove("n/edited.json")
			a.sync() // deletes them in the new history

			b.reopen(Options{OnConflict: strategy})
			b.sync()
			b.sync()
			a.sync()

			if got := b.read("n/gone.json"); got != "" {
				t.Fatalf("b: n/gone = %q: a record deleted in the new history came back", got)
			}
			if got := a.read("n/gone.json"); got != "" {
				t.Fatalf("a: n/gone = %q: a record deleted in the new history came back", got)
			}
			if got := b.read("n/kept.json"); got != canon(t, `{"v":"kept"}`) {
				t.Fatalf("b: n/kept = %q", got)
			}
			gone, err := filepath.Glob(filepath.Join(b.dir, "n", "gone.conflict-*.json"))
			if err != nil || len(gone) != 0 {
				t.Fatalf("an unedited record needs no conflict copy: %v %v", gone, err)
			}
			// b's offline edit against a's delete: the strategy decides,
			// and b's edit survives somewhere.
			edited := b.read("n/edited.json")
			switch strategy {
			case ClientWins:
				if edited != canon(t, `{"v":"edited by b offline"}`) {
					t.Fatalf("client wins: n/edited = %q", edited)
				}
			default:
				if edited != "" {
					t.Fatalf("%s: n/edited = %q, want the delete", strategy, edited)
				}
				copies, _ := filepath.Glob(filepath.Join(b.dir, "n", "edited.conflict-*.json"))
				if len(copies)+len(recoveryFiles(t, b.dir)) == 0 {
					t.Fatalf("%s: b's offline edit is in neither a conflict copy nor a recovery file", strategy)
				}
			}
			sameRecords(t, a, b)
		})
	}
}

package mount

import (
	"encoding/json"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/replica"
)

// ReplicaEngine is the Engine of a synced mount: a save is staged by the
// replica's ScanPaths, and .synk/ shows the replica's status, conflicts and
// bad entries. Pass the Backend's ReplicaEvent as the replica's
// Options.OnEvent so that pulled changes show up in the mount at once.
func ReplicaEngine(r *replica.Replica) Engine {
	return Engine{
		Stage: r.ScanPaths,
		Status: func() ([]byte, error) {
			return json.MarshalIndent(r.Status(), "", "  ")
		},
		Conflicts: func() ([]Problem, error) {
			out := []Problem{}
			for _, c := range r.Status().Conflicts {
				out = append(out, Problem{Path: c.Copy, Key: c.Key, Reason: c.Reason})
			}
			return out, nil
		},
		BadEntries: func() ([]Problem, error) {
			out := []Problem{}
			for _, e := range r.Status().Bad {
				k, _ := fsstore.PathKey(e.Path)
				out = append(out, Problem{Path: e.Path, Key: k, Reason: e.Reason})
			}
			return out, nil
		},
	}
}

// ReplicaEvent tells the mount of a replica event: a record the replica
// wrote (pulled, or settled as a conflict) is invalidated in the kernel's
// caches. It is safe to call on a nil Backend (events that arrive before
// the mount exists have nothing to invalidate).
func (b *StoreBackend) ReplicaEvent(ev replica.Event) {
	if b == nil {
		return
	}
	if ev.Kind == replica.EventPulled || ev.Kind == replica.EventConflict {
		b.Changed([]synkfs.Key{ev.Key})
	}
}

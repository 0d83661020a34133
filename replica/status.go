package replica

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/synkfs/synkfs"
)

// Status is a snapshot of a replica's state, for `synkfs status`. A running
// replica writes it to .synk/status.json whenever it changes, so the status
// command can read it from another process.
type Status struct {
	// Dir is the synced folder.
	Dir string `json:"dir"`
	// Server is the server's URL; Connection its state as the client
	// reports it ("connected", "connecting", "offline", ...).
	Server     string `json:"server"`
	Connection string `json:"connection"`
	// LastError is the last connection error, if any.
	LastError string `json:"lastError,omitempty"`
	// Epoch is the server epoch the folder is synced with.
	Epoch string `json:"epoch,omitempty"`
	// LocalVersion is the server version the folder has applied;
	// ServerVersion the newest version the server announced.
	LocalVersion  uint64 `json:"localVersion"`
	ServerVersion uint64 `json:"serverVersion"`
	// Records is the number of live records in the folder.
	Records int `json:"records"`
	// Staged lists local changes not yet acknowledged by the server.
	Staged []StagedInfo `json:"staged"`
	// Quarantined lists changes the server refused for good.
	Quarantined []Quarantined `json:"quarantined"`
	// Conflicts lists the conflict copies in the folder.
	Conflicts []Conflict `json:"conflicts"`
	// Bad lists files that are not valid records.
	Bad []BadEntry `json:"bad"`
	// Refused lists records the server sent that this folder cannot
	// hold (a name too long for a file name, an invalid key): they were
	// skipped and the rest applied. At most the latest 100.
	Refused []RefusedRecord `json:"refused,omitempty"`
	// Disk, while the folder's disk fails writes (full, or failing), says
	// what happened and what to do; sync is paused until writes work
	// again, then resumes by itself. "" while the disk works.
	Disk string `json:"disk,omitempty"`
	// PausedDeletes is the number of local deletes held back by the
	// mass-delete guard until `synkfs sync --confirm-deletes`.
	PausedDeletes int `json:"pausedDeletes,omitempty"`
	// Watch is how the folder is watched: "inotify", "polling" or "" (not
	// watching, as with --once).
	Watch string `json:"watch,omitempty"`
	// PID is the process that wrote the status; Updated when.
	PID     int       `json:"pid"`
	Updated time.Time `json:"updated"`
}

// StagedInfo is one staged local change.
type StagedInfo struct {
	Key     synkfs.Key `json:"key"`
	Deleted bool       `json:"deleted,omitempty"`
	// Since is when the change was first staged.
	Since time.Time `json:"since"`
	// Batch is the batch id it was sent in, 0 if not sent yet.
	Batch uint64 `json:"batch,omitempty"`
}

// Quarantined is a local change the server refused for good. It left the
// stage so that it does not block the changes behind it; the file stays as
// it is, and editing it again stages it anew.
type Quarantined struct {
	Key     synkfs.Key `json:"key"`
	Deleted bool       `json:"deleted,omitempty"`
	Code    string     `json:"code"`
	Message string     `json:"message"`
	Time    time.Time  `json:"time"`
}

// BadEntry is a file in the folder that is not a valid record.
type BadEntry struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// RefusedRecord is a record the server sent that the folder cannot hold.
type RefusedRecord struct {
	Key     synkfs.Key `json:"key"`
	Version uint64     `json:"version"`
	Deleted bool       `json:"deleted,omitempty"`
	Reason  string     `json:"reason"`
	Time    time.Time  `json:"time"`
}

func statusPath(root string) string { return filepath.Join(root, StateDir, statusFile) }

// statusRel is the status file's path relative to the folder root.
const statusRel = StateDir + "/" + statusFile

// writeStatus saves st as the folder's status file, atomically.
func writeStatus(root string, st *Status) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	// The status is a view, rebuilt on every change: no fsync needed.
	return writeFile(root, statusRel, append(data, '\n'), 0o644, false)
}

// ReadStatus returns the last status a replica wrote for the folder at
// root, with the conflict list read fresh from the folder. ok is false
// when no replica has written one yet.
func ReadStatus(root string) (st *Status, ok bool, err error) {
	st = &Status{Dir: root}
	data, err := os.ReadFile(statusPath(root))
	switch {
	case err == nil:
		if err := json.Unmarshal(data, st); err != nil {
			return nil, false, fmt.Errorf("read status: %s: %w", statusPath(root), err)
		}
		ok = true
	case os.IsNotExist(err):
	default:
		return nil, false, fmt.Errorf("read status: %w", err)
	}
	if st.Conflicts, err = ListConflicts(root); err != nil {
		return nil, ok, err
	}
	if st.Conflicts == nil {
		st.Conflicts = []Conflict{}
	}
	return st, ok, nil
}

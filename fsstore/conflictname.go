package fsstore

import "regexp"

// Conflict copies.
//
// A replica that keeps both sides of a conflict writes the local version
// beside the record as "<escaped id>.conflict-<host>-<yyyymmddThhmmss>.json"
// (with "-<n>" before ".json" when that name is taken). Such a file is
// never a record: the built-in ignore rules skip it, so scans never read
// it, and EscapeName escapes the '.' of any ".conflict-" inside an id, so
// no record's file name has that shape and PathKey refuses it.

// ConflictInfix separates the record's escaped id from the rest of a
// conflict copy's name.
const ConflictInfix = ".conflict-"

var conflictCopyName = regexp.MustCompile(`^(.+?)\.conflict-(.*)-(\d{8}T\d{6})(?:-\d+)?\.json$`)

// ParseConflictCopyName splits a conflict copy's file name (no folder)
// into the escaped record id, the host and the time stamp; ok is false for
// any other name.
func ParseConflictCopyName(name string) (escapedID, host, stamp string, ok bool) {
	m := conflictCopyName.FindStringSubmatch(name)
	if m == nil {
		return "", "", "", false
	}
	return m[1], m[2], m[3], true
}

// IsConflictCopyName reports whether a file name (no folder) is a conflict
// copy's.
func IsConflictCopyName(name string) bool {
	return conflictCopyName.MatchString(name)
}

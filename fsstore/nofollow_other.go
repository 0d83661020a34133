//go:build !unix

package fsstore

// oNoFollow: no such flag here; recordPath's checks and the Lstat of
// scans still refuse links.
const oNoFollow = 0

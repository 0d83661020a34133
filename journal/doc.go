// Package journal is an append-only, segmented write-ahead log of opaque
// entries. It knows nothing of what the entries mean: callers append byte
// slices, get back a sequence number once the entry is durable, replay the
// entries after a point at startup, and checkpoint to let whole segments
// go once their entries are applied elsewhere.
//
// # Durability and group commit
//
// Append returns only after the entry has been written and the segment
// file fsync'ed. One writer goroutine serves every caller: appends that
// arrive while a write and fsync are in progress are gathered into the
// next group, which costs one write and one fsync however many entries it
// holds. If a write or fsync fails, every caller in that group gets the
// error and the journal refuses all later appends with it (a failed fsync
// leaves the file's state unknown, so carrying on would be a lie).
// Reopening the journal recovers whatever reached the disk.
//
// New segment files, and removals by Checkpoint, are made durable by
// syncing the directory.
//
// # Recovery
//
// Open reads the last segment in full. If it ends in a torn entry (a
// partial frame, a final frame whose checksum fails, or a run of zero
// bytes), the segment is truncated to its last whole entry and a warning
// names the file, the offset and the number of bytes dropped; such an
// entry was never acknowledged by Append. Any other damage — a bad frame
// followed by more data, a sequence number out of order, a bad header —
// is reported as a *CorruptError naming the file and offset, by Open for
// the last segment and by Replay for the others. Nothing is dropped
// silently.
//
// # On-disk format
//
// A journal is a directory of segment files named by the sequence number
// of their first entry, zero-padded to 20 decimal digits, with the suffix
// ".wal" (for example 00000000000000000001.wal). Sequence numbers start at
// 1 and increase by one across all segments with no gaps. Every integer is
// little-endian.
//
// A segment starts with a 20-byte header:
//
//	offset size field
//	0      4    magic "SKWL"
//	4      2    format version (1)
//	6      2    flags, zero
//	8      8    sequence number of the segment's first entry
//	16     4    CRC-32C (Castagnoli) of bytes 0..15
//
// followed by entry frames, back to back:
//
//	offset size field
//	0      4    payload length n (at most MaxEntrySize)
//	4      4    CRC-32C of payload ‖ bytes 0..3 ‖ bytes 8..15
//	8      8    sequence number
//	16     n    payload
//
// The checksum runs over the payload first so that appending goroutines
// can checksum their payloads in parallel; the writer then extends it over
// the length and the sequence number it assigns.
package journal

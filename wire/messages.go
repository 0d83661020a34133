// Package wire holds the synkfs wire protocol (docs/PROTOCOL.md): the
// message types, their JSON codec with the limits a peer may not exceed,
// and Conn, a connection wrapper over github.com/coder/websocket that
// frames messages as text (JSON) or binary (zstd-compressed JSON) frames.
//
// The package holds no policy: it does not decide which messages a peer
// may send, when, or what they mean. Package server and package client do.
package wire

import (
	"bytes"
	"encoding/json"

	"github.com/synkfs/synkfs"
)

// Message type names, the value of every message's "type" field.
const (
	TypeHello           = "hello"
	TypeWelcome         = "welcome"
	TypeChanges         = "changes"
	TypeNotify          = "notify"
	TypeAck             = "ack"
	TypeSnapshotRequest = "snapshot"
	TypeSnapshotPage    = "snapshot-page"
	TypeError           = "error"
)

// ProtocolVersion is the handshake protocol number this package speaks.
const ProtocolVersion = 1

// Feature names negotiated in hello and welcome.
const (
	FeatureAck      = "ack"
	FeatureConflict = "conflict"
	FeatureSnapshot = "snapshot"
	FeatureZstd     = "zstd"
	// FeatureSkipOwn: the changes reply to an acknowledged push leaves
	// out the records that push committed; the ack already gave their
	// version, so sending them back would only echo the client's bytes.
	FeatureSkipOwn = "skip-own"
)

// Status values of a Result in an Ack.
const (
	StatusApplied  = "applied"
	StatusConflict = "conflict"
	StatusRejected = "rejected"
)

// Message is one protocol message. The set of implementations is closed:
// the pointer types of this package (*Hello, *Welcome, *Changes, *Notify,
// *Ack, *SnapshotRequest, *SnapshotPage, *Error).
type Message interface {
	// Type returns the value of the message's "type" field.
	Type() string
	isMessage()
}

// Hello is the first message of an extended client.
type Hello struct {
	Protocol int `json:"protocol"`
	// Client is the client's stable id; batch ids are counted per client.
	Client string `json:"client"`
	// Epoch is the server epoch the client last saw ("" when none).
	Epoch string `json:"epoch"`
	// Version is the highest server version the client has applied.
	Version  uint64   `json:"version"`
	Features []string `json:"features"`
}

// Welcome is the server's answer to Hello.
type Welcome struct {
	Protocol int    `json:"protocol"`
	Epoch    string `json:"epoch"`
	Version  uint64 `json:"version"`
	// Floor is the highest version whose tombstones may be compacted.
	Floor uint64 `json:"floor"`
	// Features is the intersection of what both ends support.
	Features []string `json:"features"`
	// Resync tells the client to take a snapshot instead of pulling
	// changes since its version.
	Resync bool `json:"resync"`
	// LastBatch is the highest batch id applied for this client id.
	LastBatch uint64 `json:"lastBatch"`
}

// Changes carries records and deletes, both ways. It is synk's original
// message; Batch is the only extension (0 means absent).
//
// Encoded, Update and Delete are always arrays (never null), as synk's
// validating clients insist.
type Changes struct {
	Version uint64             `json:"version"`
	Batch   uint64             `json:"batch,omitempty"`
	Update  []synkfs.Record    `json:"update"`
	Delete  []synkfs.Tombstone `json:"delete"`
}

// Notify tells a client that the server is at Version.
type Notify struct {
	Version uint64 `json:"version"`
}

// Ack answers a Changes message that carried a batch id.
type Ack struct {
	Batch   uint64 `json:"batch"`
	Version uint64 `json:"version"`
	// Duplicate is set when the batch id was already applied: nothing was
	// applied again and Results is empty.
	Duplicate bool `json:"duplicate,omitempty"`
	// Results lists the records that were not applied (empty when all were).
	Results []Result `json:"results,omitempty"`
}

// Result is the outcome for one record or delete of a batch.
type Result struct {
	synkfs.Key
	// Status is StatusApplied, StatusConflict or StatusRejected.
	Status string `json:"status"`
	// Current is the server's record when a conflict is with a live record.
	Current *synkfs.Record `json:"current,omitempty"`
	// Deleted and CurrentVersion describe a conflict with a tombstone.
	Deleted        bool   `json:"deleted,omitempty"`
	CurrentVersion uint64 `json:"currentVersion,omitempty"`
	// Code and Message say why a record was rejected.
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// SnapshotRequest asks for a page of live records in key order.
type SnapshotRequest struct {
	// After is the last key of the previous page; nil starts at the first.
	After *synkfs.Key `json:"after,omitempty"`
	// Limit is the largest page wanted; 0 leaves it to the server.
	Limit int `json:"limit,omitempty"`
}

// SnapshotPage is one page of a snapshot. Records is always encoded as
// an array.
type SnapshotPage struct {
	Epoch   string          `json:"epoch"`
	Version uint64          `json:"version"`
	Records []synkfs.Record `json:"records"`
	// Next is the key to ask for the next page after; nil when Done.
	Next *synkfs.Key `json:"next,omitempty"`
	Done bool        `json:"done"`
	// Total is the number of live records the server held when it read
	// the page, for progress figures; 0 when unknown (a token limited to
	// some types sees only part of them).
	Total int `json:"total,omitempty"`
}

// Error reports a refused message to an extended client.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Batch is the batch id of the refused changes message, 0 if none.
	Batch uint64 `json:"batch,omitempty"`
}

func (*Hello) Type() string           { return TypeHello }
func (*Welcome) Type() string         { return TypeWelcome }
func (*Changes) Type() string         { return TypeChanges }
func (*Notify) Type() string          { return TypeNotify }
func (*Ack) Type() string             { return TypeAck }
func (*SnapshotRequest) Type() string { return TypeSnapshotRequest }
func (*SnapshotPage) Type() string    { return TypeSnapshotPage }
func (*Error) Type() string           { return TypeError }

func (*Hello) isMessage()           {}
func (*Welcome) isMessage()         {}
func (*Changes) isMessage()         {}
func (*Notify) isMessage()          {}
func (*Ack) isMessage()             {}
func (*SnapshotRequest) isMessage() {}
func (*SnapshotPage) isMessage()    {}
func (*Error) isMessage()           {}

// marshal is json.Marshal without HTML escaping: the peers are programs,
// not browsers' HTML parsers, and record bodies keep the bytes they were
// sent with (compacted).
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Each MarshalJSON below embeds a method-less copy of its type ("plain")
// after a "type" field, so encoding/json writes the type first and then
// the struct's own fields.

// MarshalJSON encodes the message with its "type" field.
func (m *Hello) MarshalJSON() ([]byte, error) {
	type plain Hello
	p := plain(*m)
	if p.Features == nil {
		p.Features = []string{}
	}
	return marshal(struct {
		Type string `json:"type"`
		*plain
	}{TypeHello, &p})
}

// MarshalJSON encodes the message with its "type" field.
func (m *Welcome) MarshalJSON() ([]byte, error) {
	type plain Welcome
	p := plain(*m)
	if p.Features == nil {
		p.Features = []string{}
	}
	return marshal(struct {
		Type string `json:"type"`
		*plain
	}{TypeWelcome, &p})
}

// tombstone is a delete entry as synk spells it.
type tombstone struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Version uint64 `json:"version"`
}

// MarshalJSON encodes the message with its "type" field; Update and Delete
// are arrays even when nil.
func (m *Changes) MarshalJSON() ([]byte, error) {
	update := m.Update
	if update == nil {
		update = []synkfs.Record{}
	}
	deletes := make([]tombstone, len(m.Delete))
	for i, t := range m.Delete {
		deletes[i] = tombstone{t.Type, t.ID, t.Version}
	}
	return marshal(struct {
		Type    string          `json:"type"`
		Version uint64          `json:"version"`
		Batch   uint64          `json:"batch,omitempty"`
		Update  []synkfs.Record `json:"update"`
		Delete  []tombstone     `json:"delete"`
	}{TypeChanges, m.Version, m.Batch, update, deletes})
}

// MarshalJSON encodes the message with its "type" field.
func (m *Notify) MarshalJSON() ([]byte, error) {
	type plain Notify
	return marshal(struct {
		Type string `json:"type"`
		*plain
	}{TypeNotify, (*plain)(m)})
}

// MarshalJSON encodes the message with its "type" field.
func (m *Ack) MarshalJSON() ([]byte, error) {
	type plain Ack
	return marshal(struct {
		Type string `json:"type"`
		*plain
	}{TypeAck, (*plain)(m)})
}

// MarshalJSON encodes the message with its "type" field.
func (m *SnapshotRequest) MarshalJSON() ([]byte, error) {
	type plain SnapshotRequest
	return marshal(struct {
		Type string `json:"type"`
		*plain
	}{TypeSnapshotRequest, (*plain)(m)})
}

// MarshalJSON encodes the message with its "type" field; Records is an
// array even when nil.
func (m *SnapshotPage) MarshalJSON() ([]byte, error) {
	type plain SnapshotPage
	p := plain(*m)
	if p.Records == nil {
		p.Records = []synkfs.Record{}
	}
	return marshal(struct {
		Type string `json:"type"`
		*plain
	}{TypeSnapshotPage, &p})
}

// MarshalJSON encodes the message with its "type" field.
func (m *Error) MarshalJSON() ([]byte, error) {
	type plain Error
	return marshal(struct {
		Type string `json:"type"`
		*plain
	}{TypeError, (*plain)(m)})
}

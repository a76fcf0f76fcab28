package auth

import (
	"context"
	"errors"
	"time"
)

// Kind tells what an upload is to its slot.
type Kind string

// Upload kinds.
const (
	// KindWhole is the upload that holds the slot's file (ID derived from the slot path).
	KindWhole Kind = "whole"
	// KindPartial is a partial upload of a tus concatenation under the slot (random ID).
	KindPartial Kind = "partial"
)

// Session is the server-side authorisation of one upload. A slot's first valid
// use opens it; from then on it, not the slot, authorises requests for the upload.
type Session struct {
	// UploadID is the tus upload ID the session authorises (the primary key).
	UploadID string `json:"upload_id"`
	// SlotKey identifies the slot: hex SHA-256 of the slot path (see SlotKey).
	SlotKey string `json:"slot_key"`
	// SlotPath is the slot path the upload is served at once complete.
	SlotPath string `json:"slot_path"`
	Kind     Kind   `json:"kind"`
	// Protocol is the slot protocol that opened (or last re-bound) the session.
	Protocol Protocol `json:"protocol"`
	// Subject is the uploader that the slot named (the JWT sub, a JID) when the
	// session was opened or last re-bound; "" for protocols that name none. A
	// record written before the field existed reads as "".
	Subject string `json:"subject,omitempty"`
	// SignatureHash is SHA-256 of the opening slot signature; never the signature itself.
	SignatureHash [32]byte `json:"signature_hash"`
	// Size is the upload's size (-1 while unknown); Type the signed content type.
	Size int64  `json:"size"`
	Type string `json:"type"`

	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"last_seen"`
	// IdleDeadline slides on every accepted request; AbsDeadline never moves
	// (except on a rebind). The session is live while now is before both.
	IdleDeadline time.Time `json:"idle_deadline"`
	AbsDeadline  time.Time `json:"abs_deadline"`
	// FileExpires is when the complete file is to be deleted (zero: retention default).
	FileExpires time.Time `json:"file_expires,omitzero"`

	Complete    bool      `json:"complete"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
	// Rebinds counts re-authorisations with a fresh slot; FirstCreated is when
	// the upload was first created (bounds the total age across rebinds).
	Rebinds      int       `json:"rebinds"`
	FirstCreated time.Time `json:"first_created"`

	// SweepAt is when the clean-up must look at this session: the deadline plus
	// the retention period while incomplete, the file's expiry once complete;
	// zero means never. The session manager keeps it up to date on every write.
	SweepAt time.Time `json:"sweep_at,omitzero"`
	// KeepFile tells the clean-up that at SweepAt only the record goes, not
	// the file: a complete file kept for ever whose record is kept only for
	// the policy's History (see Policy.History).
	KeepFile bool `json:"keep_file,omitempty"`

	// LastAddr is the last client address seen (for change counting only, never a
	// credential); Addrs counts distinct changes of address.
	LastAddr string `json:"last_addr"`
	Addrs    int    `json:"addrs"`

	// OwnSlot, on a KindWhole session given to Create, says that UploadID is
	// the slot's own upload ID (DeriveUploadID of SlotPath): its slot then
	// leads to it by that ID, and Create stores no mapping for it (a lookup
	// of the slot reads the session of its own ID, see Sessions.AuthorizeSlot).
	// A slot mapped to another upload (re-bound to it) is still refused by
	// CreateAtSlot. It is not part of the record: stored sessions read back
	// without it.
	OwnSlot bool `json:"-"`
}

// Live reports whether the session still authorises requests at now.
func (s Session) Live(now time.Time) bool {
	return now.Before(s.IdleDeadline) && now.Before(s.AbsDeadline)
}

// Deadline is when the session stops authorising requests: the earlier deadline.
func (s Session) Deadline() time.Time {
	if s.AbsDeadline.Before(s.IdleDeadline) {
		return s.AbsDeadline
	}
	return s.IdleDeadline
}

// Store errors.
var (
	// ErrSessionNotFound: no session for that upload ID or slot.
	ErrSessionNotFound = errors.New("session not found")
	// ErrSlotTaken: a re-bind names a slot that is already mapped to another
	// upload (the slot has an upload of its own, or was re-bound to one).
	ErrSlotTaken = errors.New("the slot already has an upload")
	// ErrStoreUnavailable wraps failures of the backing store (disk, Redis) that a
	// client should retry; the gateway answers them with 503.
	ErrStoreUnavailable = errors.New("session store unavailable")
)

// Store keeps sessions. Every implementation passes the contract suite in
// auth/sessiontest. All methods are atomic with respect to each other.
// Returned sessions are copies, with times read back as stored (no monotonic
// clock reading). A call whose context is already done fails with an error
// wrapping the context's error and changes nothing. Errors never contain an
// upload ID or slot key (they end up in logs).
type Store interface {
	// Create stores s unless a session with the same UploadID exists, and maps
	// s.SlotKey to s.UploadID unless the slot is already mapped. Only KindWhole
	// sessions map their slot: the slot leads to the upload that holds its file,
	// never to a partial upload. It returns the stored session and whether it was
	// created by this call; when one existed, the existing session is returned
	// unchanged (and nothing is mapped).
	Create(ctx context.Context, s Session) (stored Session, created bool, err error)
	// Get returns the session of an upload, or ErrSessionNotFound.
	Get(ctx context.Context, uploadID string) (Session, error)
	// LookupSlot returns the upload ID a slot is mapped to, or ErrSessionNotFound.
	LookupSlot(ctx context.Context, slotKey string) (uploadID string, err error)
	// Update applies fn to the stored session atomically and stores the result.
	// If fn returns an error nothing is stored and Update returns that error.
	// fn may be called more than once (optimistic retries); it must not have side effects.
	// fn must not change UploadID (the update fails and nothing is stored).
	// Update never touches slot mappings, even if fn changes SlotKey.
	// ErrSessionNotFound if the session does not exist.
	Update(ctx context.Context, uploadID string, fn func(*Session) error) (Session, error)
	// Rebind atomically maps slotKey to uploadID and applies fn to the
	// upload's session, as Update does. It never takes a slot from another
	// upload: when slotKey is mapped to another upload ID it fails with an
	// error wrapping ErrSlotTaken, without calling fn and changing nothing (a
	// slot already mapped to uploadID is fine: the mapping stays). If the
	// session does not exist it fails with ErrSessionNotFound (checked first);
	// if fn fails, no mapping changes. Slots that were mapped to the upload
	// before stay mapped to it until Delete.
	Rebind(ctx context.Context, uploadID, slotKey string, fn func(*Session) error) (Session, error)
	// Delete removes the session and every slot mapping that points at it.
	// Deleting a missing session is not an error.
	Delete(ctx context.Context, uploadID string) error
	// Expired returns up to limit sessions whose SweepAt is set and before t,
	// oldest first (ties in upload ID order); none when limit is not positive.
	Expired(ctx context.Context, t time.Time, limit int) ([]Session, error)
	// Ping reports whether the store is reachable (for /readyz).
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}

// SlotCreator is a Store that also does what Sessions.Open asks of a whole
// upload's slot in one step: a remote store answers it in one round trip,
// where LookupSlot and then Create take two. Sessions.Open uses it when the
// store has it.
type SlotCreator interface {
	// CreateAtSlot is Create, except that when s maps its slot (a KindWhole
	// session) and s.SlotKey is mapped to another upload, it creates nothing,
	// maps nothing and returns that upload's ID as other (stored is then
	// zero). Like the Store's other methods it is atomic with respect to
	// them, as far as the store's Create is.
	CreateAtSlot(ctx context.Context, s Session) (stored Session, created bool, other string, err error)
}

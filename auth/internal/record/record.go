// Package record is what the session stores share about a stored session:
// the checks a new session must pass, the rules every store applies to a
// write (MapsSlot, ErrUploadIDChanged), the list of a session's times and
// how they read back, the record that the bbolt and Redis stores keep (a
// compact binary encoding, see Encode; the JSON records of earlier versions
// still decode), and a time as the Unix nanoseconds their sweep indexes are
// ordered by.
//
// It decides nothing about who may write: that is the auth package's.
package record

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// ErrUploadIDChanged is returned when an update function changes the upload ID.
var ErrUploadIDChanged = errors.New("the update changed the session's upload id")

// MaxUploadID bounds the length of an upload ID in a store (uploadgate's
// own IDs are at most 227 bytes).
const MaxUploadID = 1024

// CheckNew rejects sessions that no store can key.
func CheckNew(s auth.Session) error {
	switch {
	case s.UploadID == "":
		return errors.New("create session: empty upload id")
	case len(s.UploadID) > MaxUploadID:
		return fmt.Errorf("create session: upload id longer than %d bytes", MaxUploadID)
	}
	return nil
}

// MapsSlot reports whether the slot of s leads to it once created: a whole
// upload's session with a slot (CreateAtSlot checks that slot's mapping).
func MapsSlot(s auth.Session) bool {
	return s.Kind == auth.KindWhole && s.SlotKey != ""
}

// StoresMapping reports whether Create stores a mapping of the slot of s:
// unless the slot leads to it by its own ID (auth.Session.OwnSlot).
func StoresMapping(s auth.Session) bool {
	return MapsSlot(s) && !s.OwnSlot
}

// times lists every time of s: the one list that Normalize and Stored walk.
func times(s *auth.Session) []*time.Time {
	return []*time.Time{
		&s.Created, &s.LastSeen, &s.IdleDeadline, &s.AbsDeadline,
		&s.FileExpires, &s.CompletedAt, &s.FirstCreated, &s.SweepAt,
	}
}

// Normalize strips monotonic clock readings so that a session reads back
// the same from every store (a serialised time has none).
func Normalize(s auth.Session) auth.Session {
	for _, t := range times(&s) {
		*t = t.Round(0)
	}
	s.OwnSlot = false
	return s
}

// Stored returns s with its times as a record gives them back: in UTC,
// without a monotonic clock reading. Encoding such a session and
// decoding it again gives the same session, so a write need not decode what
// it stored.
func Stored(s auth.Session) auth.Session {
	for _, t := range times(&s) {
		*t = t.Round(0).UTC()
	}
	s.OwnSlot = false
	return s
}

// SweepNanos is t in Unix nanoseconds, clamped to the range that UnixNano
// can represent (years 1677 to 2262).
func SweepNanos(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// SweepOrder is SweepNanos(t) with the sign bit flipped: an unsigned number
// whose order is time order, even before 1970. The bbolt store's sweep keys
// start with it as 8 big-endian bytes, the Redis store's sweep entries as 16
// hex digits.
func SweepOrder(t time.Time) uint64 {
	return uint64(SweepNanos(t)) ^ (1 << 63)
}

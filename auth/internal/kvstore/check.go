package kvstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/internal/record"
)

// This file holds what the engines' tests and tools inspect.

// Commits is the number of write transactions run so far.
func (st *Store) Commits() uint64 { return st.commits.Load() }

// UpdateRaw runs fn as a write of the store, grouped with others like theirs.
func (st *Store) UpdateRaw(ctx context.Context, fn func(Tx) error) error {
	return st.update(ctx, "raw write", "", func(bk buckets) error { return fn(bk.tx) })
}

// CheckIndexes verifies that the sweep index and the reverse slot index
// agree exactly with the sessions and slot mappings: every slot mapping has a
// reverse entry unless it is its session's own slot, and every reverse entry
// is a slot mapping's.
func (st *Store) CheckIndexes() error {
	return st.eng.View(func(tx Tx) error {
		var errs []error
		wantSweep := map[string]bool{}
		ownSlot := map[string]string{}
		err := tx.Scan(Sessions, nil, func(k, v []byte) (bool, error) {
			s, err := record.Decode(string(k), v)
			if err != nil {
				return false, err
			}
			if s.UploadID != string(k) {
				errs = append(errs, fmt.Errorf("session stored under another key"))
			}
			if !s.SweepAt.IsZero() {
				wantSweep[string(sweepKey(s.SweepAt, s.UploadID))] = true
			}
			if s.SlotKey != "" {
				ownSlot[s.UploadID] = string(record.SlotIndexKey(s.SlotKey))
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		gotSweep := 0
		err = tx.Scan(Sweep, nil, func(k, _ []byte) (bool, error) {
			gotSweep++
			if !wantSweep[string(k)] {
				errs = append(errs, fmt.Errorf("stale sweep entry %x", k))
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		if gotSweep != len(wantSweep) {
			errs = append(errs, fmt.Errorf("%d sweep entries for %d sessions with a sweep time", gotSweep, len(wantSweep)))
		}
		mayReverse := map[string]bool{}  // every mapping's entry
		mustReverse := map[string]bool{} // those of slots not their session's own
		type mapping struct{ key, id string }
		var mappings []mapping
		err = tx.Scan(Slots, nil, func(k, v []byte) (bool, error) {
			mappings = append(mappings, mapping{string(k), string(v)})
			return true, nil
		})
		if err != nil {
			return err
		}
		for _, m := range mappings {
			if v, err := tx.Get(Sessions, []byte(m.id)); err != nil || v == nil {
				errs = append(errs, fmt.Errorf("slot mapped to a missing session (%v)", err))
			}
			e := string(ReverseKey(m.id, []byte(m.key)))
			mayReverse[e] = true
			if ownSlot[m.id] != m.key {
				mustReverse[e] = true
			}
		}
		err = tx.Scan(Uploads, nil, func(k, _ []byte) (bool, error) {
			if !mayReverse[string(k)] {
				errs = append(errs, fmt.Errorf("stale reverse slot entry %q", bytes.TrimLeft(k, "\x00")))
			}
			delete(mustReverse, string(k))
			return true, nil
		})
		if err != nil {
			return err
		}
		if len(mustReverse) != 0 {
			errs = append(errs, fmt.Errorf("%d slot mappings other than their session's own slot lack a reverse entry", len(mustReverse)))
		}
		return errors.Join(errs...)
	})
}

// CheckCache verifies that every cached session equals its record in the database.
func (st *Store) CheckCache() error {
	st.cache.mu.Lock()
	cached := make(map[string]auth.Session, len(st.cache.m))
	for id, s := range st.cache.m {
		cached[id] = s
	}
	st.cache.mu.Unlock()
	return st.eng.View(func(tx Tx) error {
		var errs []error
		for id, c := range cached {
			v, err := tx.Get(Sessions, []byte(id))
			if err != nil {
				return err
			}
			if v == nil {
				errs = append(errs, fmt.Errorf("cached session %d has no record", len(errs)))
				continue
			}
			s, err := record.Decode(id, v)
			if err != nil {
				return err
			}
			if c != s {
				errs = append(errs, fmt.Errorf("cached session differs from its record:\n%+v\n%+v", c, s))
			}
		}
		return errors.Join(errs...)
	})
}

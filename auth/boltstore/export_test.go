package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/internal/record"
)

// CheckIndexes verifies that the sweep index and the reverse slot index of a
// Store agree exactly with its sessions and slot mappings: every slot
// mapping has a reverse entry unless it is its session's own slot, and every
// reverse entry is a slot mapping's.
func (b *Store) CheckIndexes() error {
	return b.db.View(func(tx *bolt.Tx) error {
		bk, err := openBuckets(tx)
		if err != nil {
			return err
		}
		var errs []error
		wantSweep := map[string]bool{}
		ownSlot := map[string]string{}
		err = bk.sessions.ForEach(func(k, v []byte) error {
			s, err := record.Decode(string(k), v)
			if err != nil {
				return err
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
			return nil
		})
		if err != nil {
			return err
		}
		gotSweep := 0
		err = bk.sweep.ForEach(func(k, _ []byte) error {
			gotSweep++
			if !wantSweep[string(k)] {
				errs = append(errs, fmt.Errorf("stale sweep entry %x", k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if gotSweep != len(wantSweep) {
			errs = append(errs, fmt.Errorf("%d sweep entries for %d sessions with a sweep time", gotSweep, len(wantSweep)))
		}
		mayReverse := map[string]bool{}  // every mapping's entry
		mustReverse := map[string]bool{} // those of slots not their session's own
		err = bk.slots.ForEach(func(k, v []byte) error {
			if bk.sessions.Get(v) == nil {
				errs = append(errs, fmt.Errorf("slot mapped to a missing session"))
			}
			e := string(append(uploadPrefix(string(v)), k...))
			mayReverse[e] = true
			if ownSlot[string(v)] != string(k) {
				mustReverse[e] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = bk.uploads.ForEach(func(k, _ []byte) error {
			if !mayReverse[string(k)] {
				errs = append(errs, fmt.Errorf("stale reverse slot entry %q", bytes.TrimLeft(k, "\x00")))
			}
			delete(mustReverse, string(k))
			return nil
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

// Commits is the number of write transactions run so far.
func (b *Store) Commits() uint64 { return b.commits.Load() }

// UpdateRaw runs fn as a write of the store, grouped with others like theirs.
func (b *Store) UpdateRaw(ctx context.Context, fn func(sessions *bolt.Bucket) error) error {
	return b.update(ctx, "raw write", "", func(bk boltBuckets) error { return fn(bk.sessions) })
}

// PageWrites is the number of page writes of the store's committed transactions.
func (b *Store) PageWrites() int64 {
	st := b.db.Stats()
	return st.TxStats.GetWrite()
}

// CheckCache verifies that every cached session equals its record in the database.
func (b *Store) CheckCache() error {
	b.cache.mu.Lock()
	cached := make(map[string]auth.Session, len(b.cache.m))
	for id, s := range b.cache.m {
		cached[id] = s
	}
	b.cache.mu.Unlock()
	return b.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(bucketSessions))
		var errs []error
		for id, c := range cached {
			v := bk.Get([]byte(id))
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

// UsedBytes is the size of the database's pages in use: the file's high
// water mark less its free pages.
func (b *Store) UsedBytes() (int64, error) {
	var size int64
	err := b.db.View(func(tx *bolt.Tx) error {
		size = tx.Size()
		return nil
	})
	st := b.db.Stats()
	return size - int64(st.FreePageN+st.PendingPageN)*int64(b.db.Info().PageSize), err
}

// Package sessiontest is the contract that every auth.Store implementation
// passes. A store's test calls Run with a constructor of fresh, empty stores:
//
//	func TestMyStore(t *testing.T) {
//		sessiontest.Run(t, func(t *testing.T) auth.Store {
//			s := newMyStore(t)
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
package sessiontest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// Run runs the contract suite. newStore must return a new, empty store for
// each call and arrange for it to be closed when t ends.
func Run(t *testing.T, newStore func(t *testing.T) auth.Store) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, st auth.Store)
	}{
		{"CreateIfAbsent", testCreateIfAbsent},
		{"CreateMapsSlotOnce", testCreateMapsSlotOnce},
		{"CreateOwnSlot", testCreateOwnSlot},
		{"CreatePartialMapsNoSlot", testCreatePartialMapsNoSlot},
		{"CreateConcurrent", testCreateConcurrent},
		{"CreateRejectsEmptyID", testCreateRejectsEmptyID},
		{"NotFound", testNotFound},
		{"UpdateAtomic", testUpdateAtomic},
		{"UpdateFnError", testUpdateFnError},
		{"UpdateMustKeepUploadID", testUpdateMustKeepUploadID},
		{"UpdateLeavesSlots", testUpdateLeavesSlots},
		{"Rebind", testRebind},
		{"RebindSlotTaken", testRebindSlotTaken},
		{"RebindSlotTakenConcurrent", testRebindSlotTakenConcurrent},
		{"RebindFailureChangesNothing", testRebindFailureChangesNothing},
		{"RebindAtomic", testRebindAtomic},
		{"Delete", testDelete},
		{"Expired", testExpired},
		{"ExpiredLimit", testExpiredLimit},
		{"SweepMany", testSweepMany},
		{"SweepIndexFollowsUpdates", testSweepIndexFollowsUpdates},
		{"RoundTrip", testRoundTrip},
		{"Subject", testSubject},
		{"Copies", testCopies},
		{"ContextDone", testContextDone},
		{"Ping", testPing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newStore(t))
		})
	}
}

// base is the fixed time the sessions of the suite are built around.
func base() time.Time { return time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC) }

// ID returns the i-th upload ID of the suite: deterministic, and shaped like
// the IDs uploadgate issues.
func ID(i int) string {
	return auth.DeriveUploadID([]byte("sessiontest upload ids"), fmt.Sprintf("upload-%d", i))
}

// SlotKey returns the i-th slot key of the suite.
func SlotKey(i int) string {
	return auth.SlotKey(fmt.Sprintf("slot-%d/file.bin", i))
}

// Sample returns a session with every field set: upload ID(i), slot key
// SlotKey(i), and SweepAt at base plus i hours.
func Sample(i int) auth.Session {
	created := base().Add(-time.Duration(i) * time.Minute)
	var sig [32]byte
	for j := range sig {
		sig[j] = byte(i + j)
	}
	return auth.Session{
		UploadID:      ID(i),
		SlotKey:       SlotKey(i),
		SlotPath:      fmt.Sprintf("slot-%d/file.bin", i),
		Kind:          auth.KindWhole,
		Protocol:      auth.ProtoJWT,
		Subject:       fmt.Sprintf("user-%d@example.org", i),
		SignatureHash: sig,
		Size:          int64(1000 + i),
		Type:          "image/jpeg",
		Created:       created,
		LastSeen:      created.Add(time.Second),
		IdleDeadline:  created.Add(24 * time.Hour),
		AbsDeadline:   created.Add(72 * time.Hour),
		FileExpires:   created.Add(30 * 24 * time.Hour),
		Complete:      true,
		CompletedAt:   created.Add(time.Hour),
		Rebinds:       1,
		FirstCreated:  created.Add(-time.Hour),
		SweepAt:       base().Add(time.Duration(i) * time.Hour),
		KeepFile:      true,
		LastAddr:      "192.0.2.7",
		Addrs:         2,
	}
}

// Slot returns a verified slot of the v2 protocol for path, size and an
// image/jpeg type, whose signature hash is that of sig.
func Slot(path string, size int64, sig string) auth.Slot {
	return auth.Slot{
		Protocol:      auth.ProtoV2,
		Path:          path,
		Size:          size,
		Type:          "image/jpeg",
		SignatureHash: sha256.Sum256([]byte(sig)),
	}
}

// Clock is an injectable clock for tests of the session manager, safe for
// concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock that stands at 2030-03-04 10:00 UTC until moved.
func NewClock() *Clock {
	return &Clock{t: time.Date(2030, 3, 4, 10, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Set sets the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// CheckKept checks that st still holds the sessions want and maps each slot
// key of slots to its upload ID, as after a restart of the store (when says
// which: "after reopen", "after restart").
func CheckKept(t *testing.T, st auth.Store, when string, want []auth.Session, slots map[string]string) {
	t.Helper()
	ctx := context.Background()
	for _, w := range want {
		got, err := st.Get(ctx, w.UploadID)
		if err != nil {
			t.Fatalf("Get %s: %v", when, err)
		}
		if !Equal(got, w) {
			t.Errorf("%s\n%+v\nwant\n%+v", when, got, w)
		}
	}
	for key, w := range slots {
		if got, err := st.LookupSlot(ctx, key); err != nil || got != w {
			t.Errorf("LookupSlot %s = %q, %v; want %q", when, got, err, w)
		}
	}
}

// Equal reports whether two sessions are the same, comparing times with Equal.
func Equal(a, b auth.Session) bool {
	return canonical(a) == canonical(b)
}

func canonical(s auth.Session) auth.Session {
	for _, p := range timeFields(&s) {
		*p = p.UTC().Round(0)
	}
	s.OwnSlot = false // a field of the call to Create, not of the session stored
	return s
}

// timeFields points at every time.Time field of s.
func timeFields(s *auth.Session) []*time.Time {
	v := reflect.ValueOf(s).Elem()
	var out []*time.Time
	for i := range v.NumField() {
		if p, ok := v.Field(i).Addr().Interface().(*time.Time); ok {
			out = append(out, p)
		}
	}
	return out
}

func mustCreate(t *testing.T, st auth.Store, s auth.Session) auth.Session {
	t.Helper()
	got, created, err := st.Create(context.Background(), s)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if !created {
		t.Fatalf("Create of a new upload: created = false")
	}
	if !Equal(got, s) {
		t.Fatalf("Create returned\n%+v\nwant\n%+v", got, s)
	}
	return got
}

func mustGet(t *testing.T, st auth.Store, id string) auth.Session {
	t.Helper()
	s, err := st.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	return s
}

func wantSession(t *testing.T, st auth.Store, want auth.Session) {
	t.Helper()
	if got := mustGet(t, st, want.UploadID); !Equal(got, want) {
		t.Fatalf("stored session\n%+v\nwant\n%+v", got, want)
	}
}

func wantGone(t *testing.T, st auth.Store, id string) {
	t.Helper()
	if _, err := st.Get(context.Background(), id); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatalf("Get of a missing session: err = %v, want ErrSessionNotFound", err)
	}
}

func wantSlot(t *testing.T, st auth.Store, slotKey, wantID string) {
	t.Helper()
	got, err := st.LookupSlot(context.Background(), slotKey)
	if wantID == "" {
		if !errors.Is(err, auth.ErrSessionNotFound) {
			t.Fatalf("LookupSlot of an unmapped slot = %q, %v; want ErrSessionNotFound", got, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("LookupSlot: %v", err)
	}
	if got != wantID {
		t.Fatalf("LookupSlot = %q, want %q", got, wantID)
	}
}

func expiredIDs(t *testing.T, st auth.Store, at time.Time, limit int) []string {
	t.Helper()
	due, err := st.Expired(context.Background(), at, limit)
	if err != nil {
		t.Fatalf("Expired: %v", err)
	}
	ids := make([]string, len(due))
	for i, s := range due {
		ids[i] = s.UploadID
	}
	return ids
}

func testCreateIfAbsent(t *testing.T, st auth.Store) {
	first := mustCreate(t, st, Sample(1))
	second := Sample(2)
	second.UploadID = first.UploadID
	got, created, err := st.Create(context.Background(), second)
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	if created {
		t.Errorf("second Create with the same upload ID: created = true")
	}
	if !Equal(got, first) {
		t.Errorf("second Create returned\n%+v\nwant the first session\n%+v", got, first)
	}
	wantSession(t, st, first)
	// The losing Create maps nothing.
	wantSlot(t, st, second.SlotKey, "")
}

func testCreateMapsSlotOnce(t *testing.T, st auth.Store) {
	a := mustCreate(t, st, Sample(1))
	wantSlot(t, st, a.SlotKey, a.UploadID)
	// Another upload with the same slot key is stored but does not take the
	// slot's mapping.
	b := Sample(2)
	b.SlotKey = a.SlotKey
	mustCreate(t, st, b)
	wantSlot(t, st, a.SlotKey, a.UploadID)
	wantSession(t, st, b)
}

func testCreatePartialMapsNoSlot(t *testing.T, st auth.Store) {
	// A partial upload of a concatenation never takes its slot's mapping, even
	// when it is the first upload under the slot ...
	p := Sample(1)
	p.Kind = auth.KindPartial
	mustCreate(t, st, p)
	wantSlot(t, st, p.SlotKey, "")
	// ... which the whole upload then gets.
	w := Sample(2)
	w.SlotKey = p.SlotKey
	mustCreate(t, st, w)
	wantSlot(t, st, p.SlotKey, w.UploadID)
	// Deleting the partial upload leaves it.
	if err := st.Delete(context.Background(), p.UploadID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantSlot(t, st, p.SlotKey, w.UploadID)
}

func testCreateConcurrent(t *testing.T, st auth.Store) {
	const n = 50
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results [n]auth.Session
		created [n]bool
		errs    [n]error
	)
	for i := range n {
		wg.Go(func() {
			s := Sample(1)
			s.LastAddr = fmt.Sprintf("198.51.100.%d", i) // every caller's session differs
			<-start
			results[i], created[i], errs[i] = st.Create(context.Background(), s)
		})
	}
	close(start)
	wg.Wait()
	winners := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Create %d: %v", i, errs[i])
		}
		if created[i] {
			winners++
		}
	}
	if winners != 1 {
		t.Fatalf("%d of %d concurrent Creates of one upload report created, want exactly 1", winners, n)
	}
	stored := mustGet(t, st, ID(1))
	for i := range n {
		if !Equal(results[i], stored) {
			t.Errorf("Create %d returned\n%+v\nbut the store holds\n%+v", i, results[i], stored)
		}
	}
	wantSlot(t, st, SlotKey(1), ID(1))
}

func testCreateRejectsEmptyID(t *testing.T, st auth.Store) {
	s := Sample(1)
	s.UploadID = ""
	if _, _, err := st.Create(context.Background(), s); err == nil {
		t.Fatal("Create of a session without upload ID succeeded")
	}
	wantSlot(t, st, s.SlotKey, "")
}

func testNotFound(t *testing.T, st auth.Store) {
	ctx := context.Background()
	mustCreate(t, st, Sample(1))
	wantGone(t, st, ID(2))
	wantSlot(t, st, SlotKey(2), "")
	called := false
	_, err := st.Update(ctx, ID(2), func(*auth.Session) error { called = true; return nil })
	if !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("Update of a missing session: err = %v, want ErrSessionNotFound", err)
	}
	_, err = st.Rebind(ctx, ID(2), SlotKey(3), func(*auth.Session) error { called = true; return nil })
	if !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("Rebind of a missing session: err = %v, want ErrSessionNotFound", err)
	}
	if called {
		t.Error("fn was called for a missing session")
	}
	wantGone(t, st, ID(2))
	wantSlot(t, st, SlotKey(3), "")
}

func testUpdateAtomic(t *testing.T, st auth.Store) {
	s := Sample(1)
	s.Rebinds = 0
	mustCreate(t, st, s)
	const n = 100
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := st.Update(context.Background(), s.UploadID, func(s *auth.Session) error {
				s.Rebinds++
				return nil
			})
			if err != nil {
				t.Errorf("Update: %v", err)
			}
		})
	}
	wg.Wait()
	if got := mustGet(t, st, s.UploadID).Rebinds; got != n {
		t.Fatalf("after %d concurrent increments Rebinds = %d", n, got)
	}
}

func testUpdateFnError(t *testing.T, st auth.Store) {
	s := mustCreate(t, st, Sample(1))
	boom := errors.New("boom")
	_, err := st.Update(context.Background(), s.UploadID, func(p *auth.Session) error {
		p.Rebinds = 99
		p.SweepAt = base().Add(-48 * time.Hour) // would make it due if stored
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update with a failing fn: err = %v, want fn's error", err)
	}
	wantSession(t, st, s)
	if ids := expiredIDs(t, st, base(), 10); len(ids) != 0 {
		t.Fatalf("a failed Update moved the session in the sweep index: Expired = %v", ids)
	}
}

func testUpdateMustKeepUploadID(t *testing.T, st auth.Store) {
	s := mustCreate(t, st, Sample(1))
	_, err := st.Update(context.Background(), s.UploadID, func(p *auth.Session) error {
		p.UploadID = ID(2)
		return nil
	})
	if err == nil {
		t.Fatal("Update that changes the upload ID succeeded")
	}
	wantSession(t, st, s)
	wantGone(t, st, ID(2))
}

func testUpdateLeavesSlots(t *testing.T, st auth.Store) {
	s := mustCreate(t, st, Sample(1))
	got, err := st.Update(context.Background(), s.UploadID, func(p *auth.Session) error {
		p.SlotKey = SlotKey(2)
		p.Addrs++
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	want := s
	want.SlotKey = SlotKey(2)
	want.Addrs++
	if !Equal(got, want) {
		t.Fatalf("Update returned\n%+v\nwant\n%+v", got, want)
	}
	wantSession(t, st, want)
	wantSlot(t, st, SlotKey(1), s.UploadID)
	wantSlot(t, st, SlotKey(2), "")
}

func testRebind(t *testing.T, st auth.Store) {
	ctx := context.Background()
	a := mustCreate(t, st, Sample(1))
	b := mustCreate(t, st, Sample(2))
	// Map a fresh slot to a (and apply fn) ...
	got, err := st.Rebind(ctx, a.UploadID, SlotKey(3), func(p *auth.Session) error {
		p.SlotKey = SlotKey(3)
		p.Rebinds++
		return nil
	})
	if err != nil {
		t.Fatalf("Rebind: %v", err)
	}
	want := a
	want.SlotKey = SlotKey(3)
	want.Rebinds++
	if !Equal(got, want) {
		t.Fatalf("Rebind returned\n%+v\nwant\n%+v", got, want)
	}
	wantSession(t, st, want)
	wantSlot(t, st, SlotKey(3), a.UploadID)
	wantSlot(t, st, a.SlotKey, a.UploadID) // earlier slots stay mapped
	wantSession(t, st, b)                  // the other session is untouched
	wantSlot(t, st, b.SlotKey, b.UploadID)
	// ... to another fresh slot ...
	if _, err := st.Rebind(ctx, a.UploadID, SlotKey(4), func(*auth.Session) error { return nil }); err != nil {
		t.Fatalf("Rebind to a new slot: %v", err)
	}
	wantSlot(t, st, SlotKey(4), a.UploadID)
	wantSlot(t, st, SlotKey(3), a.UploadID)
	// ... and to a slot it already has (idempotent).
	if _, err := st.Rebind(ctx, a.UploadID, SlotKey(4), func(*auth.Session) error { return nil }); err != nil {
		t.Fatalf("repeated Rebind: %v", err)
	}
	wantSlot(t, st, SlotKey(4), a.UploadID)

	// Once b is deleted, its slot is free and a may be re-bound to it.
	if err := st.Delete(ctx, b.UploadID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantSlot(t, st, b.SlotKey, "")
	if _, err := st.Rebind(ctx, a.UploadID, b.SlotKey, func(*auth.Session) error { return nil }); err != nil {
		t.Fatalf("Rebind to the slot of a deleted upload: %v", err)
	}
	wantSlot(t, st, b.SlotKey, a.UploadID)
	// Deleting a removes every slot mapped to it.
	if err := st.Delete(ctx, a.UploadID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, k := range []string{SlotKey(1), SlotKey(2), SlotKey(3), SlotKey(4)} {
		wantSlot(t, st, k, "")
	}
}

// testRebindSlotTaken: Rebind never takes a slot that is mapped to another
// upload, whether by its Create or by a Rebind; it fails with ErrSlotTaken,
// without calling fn, and changes nothing.
func testRebindSlotTaken(t *testing.T, st auth.Store) {
	ctx := context.Background()
	a := mustCreate(t, st, Sample(1))
	b := mustCreate(t, st, Sample(2))
	// b also holds a slot through a rebind.
	b, err := st.Rebind(ctx, b.UploadID, SlotKey(3), func(p *auth.Session) error { p.Rebinds++; return nil })
	if err != nil {
		t.Fatalf("Rebind to a fresh slot: %v", err)
	}
	for _, key := range []string{b.SlotKey, SlotKey(2), SlotKey(3)} {
		called := false
		_, err := st.Rebind(ctx, a.UploadID, key, func(p *auth.Session) error {
			called = true
			p.Rebinds = 42
			p.SweepAt = base().Add(-48 * time.Hour) // would make it due if stored
			return nil
		})
		if !errors.Is(err, auth.ErrSlotTaken) {
			t.Fatalf("Rebind to another upload's slot: err = %v, want ErrSlotTaken", err)
		}
		if called {
			t.Error("Rebind to another upload's slot called fn")
		}
		wantSession(t, st, a)
		wantSession(t, st, b)
		wantSlot(t, st, a.SlotKey, a.UploadID)
		wantSlot(t, st, SlotKey(2), b.UploadID)
		wantSlot(t, st, SlotKey(3), b.UploadID)
		if ids := expiredIDs(t, st, base(), 10); len(ids) != 0 {
			t.Fatalf("a refused Rebind moved the session in the sweep index: Expired = %v", ids)
		}
	}
	// A missing session is reported as such, even for a taken slot.
	if _, err := st.Rebind(ctx, ID(9), SlotKey(2), func(*auth.Session) error { return nil }); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("Rebind of a missing session to a taken slot: err = %v, want ErrSessionNotFound", err)
	}
	// The slot a upload already holds is no obstacle.
	got, err := st.Rebind(ctx, a.UploadID, a.SlotKey, func(p *auth.Session) error { p.Rebinds++; return nil })
	if err != nil {
		t.Fatalf("Rebind to the upload's own slot: %v", err)
	}
	want := a
	want.Rebinds++
	if !Equal(got, want) {
		t.Fatalf("Rebind to the upload's own slot returned\n%+v\nwant\n%+v", got, want)
	}
	wantSession(t, st, want)
	wantSlot(t, st, a.SlotKey, a.UploadID)
}

// testRebindSlotTakenConcurrent: of several uploads re-bound to one fresh
// slot at once, exactly one gets it.
func testRebindSlotTakenConcurrent(t *testing.T, st auth.Store) {
	const n = 20
	for i := range n {
		s := Sample(i)
		s.Rebinds = 0
		mustCreate(t, st, s)
	}
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  [n]error
	)
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = st.Rebind(context.Background(), ID(i), SlotKey(100), func(p *auth.Session) error {
				p.Rebinds++
				return nil
			})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("Rebinds of uploads %d and %d to one slot both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, auth.ErrSlotTaken):
			t.Fatalf("Rebind %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no Rebind got the fresh slot")
	}
	wantSlot(t, st, SlotKey(100), ID(winner))
	for i := range n {
		want := 0
		if i == winner {
			want = 1
		}
		if got := mustGet(t, st, ID(i)).Rebinds; got != want {
			t.Errorf("upload %d: Rebinds = %d, want %d", i, got, want)
		}
	}
}

func testRebindFailureChangesNothing(t *testing.T, st auth.Store) {
	a := mustCreate(t, st, Sample(1))
	boom := errors.New("boom")
	_, err := st.Rebind(context.Background(), a.UploadID, SlotKey(3), func(p *auth.Session) error {
		p.Rebinds = 42
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Rebind with a failing fn: err = %v, want fn's error", err)
	}
	wantSession(t, st, a)
	wantSlot(t, st, SlotKey(3), "")
}

func testRebindAtomic(t *testing.T, st auth.Store) {
	s := Sample(1)
	s.Rebinds = 0
	mustCreate(t, st, s)
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := st.Rebind(context.Background(), s.UploadID, SlotKey(100+i), func(p *auth.Session) error {
				p.Rebinds++
				return nil
			})
			if err != nil {
				t.Errorf("Rebind: %v", err)
			}
		})
	}
	wg.Wait()
	if got := mustGet(t, st, s.UploadID).Rebinds; got != n {
		t.Errorf("after %d concurrent Rebinds Rebinds = %d", n, got)
	}
	for i := range n {
		wantSlot(t, st, SlotKey(100+i), s.UploadID)
	}
}

func testDelete(t *testing.T, st auth.Store) {
	ctx := context.Background()
	a := mustCreate(t, st, Sample(1))
	b := mustCreate(t, st, Sample(2))
	for range 2 { // idempotent
		if err := st.Delete(ctx, a.UploadID); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		wantGone(t, st, a.UploadID)
		wantSlot(t, st, a.SlotKey, "")
	}
	if err := st.Delete(ctx, ID(99)); err != nil {
		t.Fatalf("Delete of a session that never existed: %v", err)
	}
	wantSession(t, st, b)
	wantSlot(t, st, b.SlotKey, b.UploadID)
	if ids := expiredIDs(t, st, base().Add(1000*time.Hour), 10); !slices.Equal(ids, []string{b.UploadID}) {
		t.Fatalf("Expired after Delete = %v, want only %v", ids, b.UploadID)
	}
	// The upload ID can be used again.
	mustCreate(t, st, a)
	wantSlot(t, st, a.SlotKey, a.UploadID)
}

func testExpired(t *testing.T, st auth.Store) {
	// Sample(i).SweepAt is base + i hours; create out of order.
	for _, i := range []int{5, 2, 4, 1, 3} {
		mustCreate(t, st, Sample(i))
	}
	never := Sample(6)
	never.SweepAt = time.Time{}
	mustCreate(t, st, never)
	tie := Sample(7)
	tie.SweepAt = Sample(2).SweepAt
	mustCreate(t, st, tie)
	// ID(2) and ID(7) share a sweep time and come in upload ID order.
	tied := []string{ID(2), ID(7)}
	if tied[0] > tied[1] {
		tied[0], tied[1] = tied[1], tied[0]
	}

	tests := []struct {
		name string
		at   time.Time
		want []string
	}{
		{"none due", base(), nil},
		{"due is strictly before t", Sample(1).SweepAt, nil},
		{"one", Sample(1).SweepAt.Add(time.Nanosecond), []string{ID(1)}},
		{"oldest first", Sample(3).SweepAt.Add(time.Minute), []string{ID(1), tied[0], tied[1], ID(3)}},
		{"all but never", base().Add(10000 * time.Hour), []string{ID(1), tied[0], tied[1], ID(3), ID(4), ID(5)}},
		{"far future", time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), []string{ID(1), tied[0], tied[1], ID(3), ID(4), ID(5)}},
		{"zero time", time.Time{}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := expiredIDs(t, st, tc.at, 100); !slices.Equal(got, tc.want) {
				t.Errorf("Expired(%s) = %v, want %v", tc.at, got, tc.want)
			}
		})
	}
}

func testExpiredLimit(t *testing.T, st auth.Store) {
	for i := 1; i <= 5; i++ {
		mustCreate(t, st, Sample(i))
	}
	at := base().Add(100 * time.Hour)
	tests := []struct {
		limit int
		want  []string
	}{
		{-1, nil},
		{0, nil},
		{1, []string{ID(1)}},
		{3, []string{ID(1), ID(2), ID(3)}},
		{5, []string{ID(1), ID(2), ID(3), ID(4), ID(5)}},
		{50, []string{ID(1), ID(2), ID(3), ID(4), ID(5)}},
	}
	for _, tc := range tests {
		if got := expiredIDs(t, st, at, tc.limit); !slices.Equal(got, tc.want) {
			t.Errorf("Expired(limit %d) = %v, want %v", tc.limit, got, tc.want)
		}
	}
}

// testSweepMany deletes many expired sessions in batches, as the clean-up does.
func testSweepMany(t *testing.T, st auth.Store) {
	ctx := context.Background()
	const expired, live, batch = 320, 7, 50
	for i := range expired + live {
		s := Sample(i)
		s.SweepAt = base().Add(time.Duration(i) * time.Second)
		if i >= expired {
			s.SweepAt = base().Add(time.Hour + time.Duration(i)*time.Second)
		}
		mustCreate(t, st, s)
	}
	swept := map[string]bool{}
	rounds := 0
	for {
		due, err := st.Expired(ctx, base().Add(time.Hour), batch)
		if err != nil {
			t.Fatalf("Expired: %v", err)
		}
		if len(due) == 0 {
			break
		}
		if rounds++; rounds > expired/batch+2 {
			t.Fatalf("still %d due after %d rounds of %d", len(due), rounds, batch)
		}
		if len(due) > batch {
			t.Fatalf("Expired returned %d sessions, limit %d", len(due), batch)
		}
		for _, s := range due {
			if swept[s.UploadID] {
				t.Fatalf("Expired returned an already deleted session")
			}
			swept[s.UploadID] = true
			if err := st.Delete(ctx, s.UploadID); err != nil {
				t.Fatalf("Delete: %v", err)
			}
		}
	}
	if len(swept) != expired {
		t.Fatalf("swept %d sessions, want %d", len(swept), expired)
	}
	if want := (expired + batch - 1) / batch; rounds != want {
		t.Errorf("sweeping took %d rounds, want %d", rounds, want)
	}
	for i := range expired + live {
		if i < expired {
			wantGone(t, st, ID(i))
		} else {
			wantSession(t, st, func() auth.Session {
				s := Sample(i)
				s.SweepAt = base().Add(time.Hour + time.Duration(i)*time.Second)
				return s
			}())
		}
	}
}

func testSweepIndexFollowsUpdates(t *testing.T, st auth.Store) {
	ctx := context.Background()
	s := mustCreate(t, st, Sample(1)) // SweepAt base+1h
	set := func(at time.Time) {
		t.Helper()
		if _, err := st.Update(ctx, s.UploadID, func(p *auth.Session) error { p.SweepAt = at; return nil }); err != nil {
			t.Fatalf("Update: %v", err)
		}
	}
	tests := []struct {
		name    string
		sweepAt time.Time
		at      time.Time
		want    []string
	}{
		{"later: old position not due", base().Add(5 * time.Hour), base().Add(2 * time.Hour), nil},
		{"later: new position due", base().Add(5 * time.Hour), base().Add(6 * time.Hour), []string{s.UploadID}},
		{"earlier", base().Add(-time.Hour), base(), []string{s.UploadID}},
		{"cleared", time.Time{}, base().Add(10000 * time.Hour), nil},
		{"set again", base().Add(3 * time.Hour), base().Add(10000 * time.Hour), []string{s.UploadID}},
	}
	for _, tc := range tests {
		set(tc.sweepAt)
		if got := expiredIDs(t, st, tc.at, 10); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Expired = %v, want %v", tc.name, got, tc.want)
		}
	}
	// A Rebind moves it too.
	if _, err := st.Rebind(ctx, s.UploadID, SlotKey(2), func(p *auth.Session) error {
		p.SweepAt = base().Add(9 * time.Hour)
		return nil
	}); err != nil {
		t.Fatalf("Rebind: %v", err)
	}
	if got := expiredIDs(t, st, base().Add(8*time.Hour), 10); len(got) != 0 {
		t.Errorf("after Rebind moved SweepAt: Expired = %v, want none", got)
	}
	if got := expiredIDs(t, st, base().Add(10*time.Hour), 10); !slices.Equal(got, []string{s.UploadID}) {
		t.Errorf("after Rebind moved SweepAt: Expired = %v, want %v", got, s.UploadID)
	}
}

// A whole upload created with its slot's own ID (OwnSlot) gets no mapping:
// the slot's lookup finds nothing, the session reads back without the flag,
// and a later Create of another upload at that slot maps it as usual.
func testCreateOwnSlot(t *testing.T, st auth.Store) {
	ctx := context.Background()
	s := Sample(1)
	s.OwnSlot = true
	got, created, err := st.Create(ctx, s)
	if err != nil || !created {
		t.Fatalf("Create with OwnSlot: %v, %v", created, err)
	}
	if got.OwnSlot {
		t.Error("Create returned the session with OwnSlot; it is not part of the record")
	}
	if id, err := st.LookupSlot(ctx, s.SlotKey); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("LookupSlot of an own slot = %q, %v; want ErrSessionNotFound (no mapping stored)", id, err)
	}
	if g, err := st.Get(ctx, s.UploadID); err != nil || g.OwnSlot || !Equal(g, Sample(1)) {
		t.Errorf("Get = %+v, %v; want the session as created, without OwnSlot", g, err)
	}
	if err := st.Delete(ctx, s.UploadID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, s.UploadID); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	// Another upload at the same slot, without the flag, maps it.
	o := Sample(2)
	o.SlotKey, o.SlotPath = s.SlotKey, s.SlotPath
	mustCreate(t, st, o)
	if id, err := st.LookupSlot(ctx, s.SlotKey); err != nil || id != o.UploadID {
		t.Errorf("LookupSlot after a Create without OwnSlot = %q, %v; want %q", id, err, o.UploadID)
	}
}

func testRoundTrip(t *testing.T, st auth.Store) {
	s := Sample(3)
	v := reflect.ValueOf(s)
	for i := range v.NumField() {
		if v.Type().Field(i).Name == "OwnSlot" {
			continue // a field of the call to Create, not of the record (testCreateOwnSlot)
		}
		if v.Field(i).IsZero() {
			t.Fatalf("sessiontest: Sample leaves field %s zero; set it so that the round trip covers it", v.Type().Field(i).Name)
		}
	}
	// Times with a monotonic clock reading and in another zone.
	now := time.Now()
	zone := time.FixedZone("UTC+05:30", 5*3600+1800)
	s.Created = now
	s.LastSeen = now.Add(time.Nanosecond)
	s.IdleDeadline = now.In(zone).Add(24 * time.Hour)
	s.Kind = auth.KindPartial
	s.Protocol = auth.ProtoJWT
	s.Size = -1
	s.Type = "text/plain; charset=\"utf-8\" ünïcode"
	s.SlotPath = "dir/holiday photo €.jpg"
	s.Subject = "jüliet@capulet.example/balcony \"1\""
	s.LastAddr = "[2001:db8::1]:443"

	created, _, err := st.Create(context.Background(), s)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	got := mustGet(t, st, s.UploadID)
	for _, r := range []struct {
		name string
		s    auth.Session
	}{{"Create", created}, {"Get", got}} {
		if !Equal(r.s, s) {
			t.Errorf("%s returned\n%+v\nwant\n%+v", r.name, r.s, s)
		}
		for _, p := range timeFields(&r.s) {
			if strings.Contains(p.String(), " m=") {
				t.Errorf("%s returned a time with a monotonic clock reading: %s", r.name, p)
			}
		}
	}
	// Zero times stay zero.
	z := Sample(4)
	z.FileExpires, z.CompletedAt, z.SweepAt = time.Time{}, time.Time{}, time.Time{}
	mustCreate(t, st, z)
	gz := mustGet(t, st, z.UploadID)
	if !gz.FileExpires.IsZero() || !gz.CompletedAt.IsZero() || !gz.SweepAt.IsZero() {
		t.Errorf("zero times read back as %v, %v, %v", gz.FileExpires, gz.CompletedAt, gz.SweepAt)
	}
}

// testSubject: the uploader's JID is kept by every write, and a session
// without one reads back without one.
func testSubject(t *testing.T, st auth.Store) {
	ctx := context.Background()
	a := mustCreate(t, st, Sample(1))
	if a.Subject == "" {
		t.Fatal("sessiontest: Sample sets no Subject")
	}
	none := Sample(2)
	none.Protocol, none.Subject = auth.ProtoV2, ""
	mustCreate(t, st, none)
	wantSession(t, st, none)

	// An update of other fields keeps it ...
	got, err := st.Update(ctx, a.UploadID, func(p *auth.Session) error { p.Addrs++; return nil })
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got.Subject != a.Subject {
		t.Fatalf("Update returned Subject %q, want %q", got.Subject, a.Subject)
	}
	a.Addrs++
	wantSession(t, st, a)
	// ... a rebind replaces it ...
	got, err = st.Rebind(ctx, a.UploadID, SlotKey(3), func(p *auth.Session) error {
		p.Subject = "romeo@montague.example"
		return nil
	})
	if err != nil {
		t.Fatalf("Rebind: %v", err)
	}
	a.Subject = "romeo@montague.example"
	if !Equal(got, a) {
		t.Fatalf("Rebind returned\n%+v\nwant\n%+v", got, a)
	}
	wantSession(t, st, a)
	// ... and so does an update that clears it.
	if _, err := st.Update(ctx, a.UploadID, func(p *auth.Session) error { p.Subject = ""; return nil }); err != nil {
		t.Fatalf("Update: %v", err)
	}
	a.Subject = ""
	wantSession(t, st, a)
}

func testCopies(t *testing.T, st auth.Store) {
	ctx := context.Background()
	s := Sample(1)
	created := mustCreate(t, st, s)
	created.Rebinds = 77
	got := mustGet(t, st, s.UploadID)
	got.Addrs = 77
	var kept *auth.Session
	updated, err := st.Update(ctx, s.UploadID, func(p *auth.Session) error {
		kept = p
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	updated.Size = 77
	kept.LastAddr = "203.0.113.77"
	expired := expiredIDs(t, st, base().Add(100*time.Hour), 10)
	if len(expired) != 1 {
		t.Fatalf("Expired = %v", expired)
	}
	due, _ := st.Expired(ctx, base().Add(100*time.Hour), 10)
	due[0].Type = "changed"
	wantSession(t, st, s)
}

func testContextDone(t *testing.T, st auth.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a := mustCreate(t, st, Sample(1))
	noop := func(p *auth.Session) error { p.Rebinds = 5; return nil }
	b := Sample(2)
	calls := []struct {
		name string
		call func() error
	}{
		{"Create", func() error { _, _, err := st.Create(ctx, b); return err }},
		{"Get", func() error { _, err := st.Get(ctx, a.UploadID); return err }},
		{"LookupSlot", func() error { _, err := st.LookupSlot(ctx, a.SlotKey); return err }},
		{"Update", func() error { _, err := st.Update(ctx, a.UploadID, noop); return err }},
		{"Rebind", func() error { _, err := st.Rebind(ctx, a.UploadID, b.SlotKey, noop); return err }},
		{"Delete", func() error { return st.Delete(ctx, a.UploadID) }},
		{"Expired", func() error { _, err := st.Expired(ctx, base().Add(100*time.Hour), 10); return err }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: err = %v, want context.Canceled", c.name, err)
		}
	}
	wantSession(t, st, a)
	wantGone(t, st, b.UploadID)
	wantSlot(t, st, b.SlotKey, "")
}

func testPing(t *testing.T, st auth.Store) {
	if err := st.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// slotCreatorIDKey derives the upload IDs of CheckSlotCreator's slots.
var slotCreatorIDKey = []byte("0123456789abcdef0123456789abcdef")

// SlotCreatorStore is a Store that is an auth.SlotCreator.
type SlotCreatorStore interface {
	auth.Store
	auth.SlotCreator
}

// CheckSlotCreator checks CreateAtSlot on a new, empty store: at a free slot,
// again, at a slot re-bound to another upload (nothing created), for a
// partial upload (no slot checked), and through Sessions.Open.
func CheckSlotCreator(t *testing.T, st SlotCreatorStore) {
	t.Helper()
	ctx := context.Background()
	s1 := Sample(1)
	if got, created, other, err := st.CreateAtSlot(ctx, s1); err != nil || !created || other != "" || !Equal(got, s1) {
		t.Fatalf("CreateAtSlot at a free slot: %v, %q, %v", created, other, err)
	}
	if id, err := st.LookupSlot(ctx, s1.SlotKey); err != nil || id != s1.UploadID {
		t.Fatalf("LookupSlot after CreateAtSlot: %q, %v", id, err)
	}
	if _, created, other, err := st.CreateAtSlot(ctx, s1); err != nil || created || other != "" {
		t.Fatalf("CreateAtSlot again: %v, %q, %v; want the existing session", created, other, err)
	}
	// Upload 1 re-bound to slot 2: upload 2, whose slot that is, is not created.
	if _, err := st.Rebind(ctx, s1.UploadID, SlotKey(2), func(*auth.Session) error { return nil }); err != nil {
		t.Fatal(err)
	}
	s2 := Sample(2)
	if _, created, other, err := st.CreateAtSlot(ctx, s2); err != nil || created || other != s1.UploadID {
		t.Fatalf("CreateAtSlot at a re-bound slot: %v, %q, %v; want upload 1", created, other, err)
	}
	if _, err := st.Get(ctx, s2.UploadID); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("CreateAtSlot at a re-bound slot left a session: %v", err)
	}
	if due, err := st.Expired(ctx, s2.SweepAt.Add(time.Hour), 10); err != nil || len(due) != 1 {
		t.Errorf("Expired after CreateAtSlot at a re-bound slot: %d sessions, %v; want upload 1 alone", len(due), err)
	}
	// A partial upload maps no slot, so none is checked.
	p := Sample(3)
	p.Kind, p.SlotKey = auth.KindPartial, SlotKey(2)
	if _, created, other, err := st.CreateAtSlot(ctx, p); err != nil || !created || other != "" {
		t.Fatalf("CreateAtSlot of a partial upload: %v, %q, %v", created, other, err)
	}

	// Through the session manager: Open at the re-bound slot leads to upload 1.
	m := auth.NewSessions(st, auth.DefaultPolicy(), NewClock().Now)
	orig := Slot("d1/photo.jpg", 4096, "sig-orig")
	o, created, err := m.Open(ctx, orig, auth.DeriveUploadID(slotCreatorIDKey, orig.Path), auth.KindWhole, "")
	if err != nil || !created {
		t.Fatalf("Open: %v, %v", created, err)
	}
	fresh := Slot("d2/photo.jpg", 4096, "sig-fresh")
	if _, err := m.Rebind(ctx, o.UploadID, fresh, ""); err != nil {
		t.Fatal(err)
	}
	freshID := auth.DeriveUploadID(slotCreatorIDKey, fresh.Path)
	if got, created, err := m.Open(ctx, fresh, freshID, auth.KindWhole, ""); err != nil || created || got.UploadID != o.UploadID {
		t.Fatalf("Open at a re-bound slot: %q, %v, %v; want the re-bound upload", got.UploadID, created, err)
	}
	if _, err := st.Get(ctx, freshID); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("Open at a re-bound slot created a second session: %v", err)
	}
}

// CheckSlotResolver checks ResolveSlot on a new, empty store: a slot leads
// to its own upload without a mapping, to the upload it was re-bound to
// before its own, never to a partial upload by its own ID, and to nothing
// when it has neither.
func CheckSlotResolver(t *testing.T, st interface {
	auth.Store
	auth.SlotResolver
}) {
	t.Helper()
	ctx := context.Background()
	own := Sample(1)
	own.OwnSlot = true
	mustCreate(t, st, own)
	if got, err := st.ResolveSlot(ctx, own.SlotKey, own.UploadID); err != nil || !Equal(got, Sample(1)) {
		t.Errorf("ResolveSlot of an own slot = %+v, %v; want its upload's session", got, err)
	}
	if _, err := st.ResolveSlot(ctx, SlotKey(2), ID(2)); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("ResolveSlot of a slot without upload: %v; want ErrSessionNotFound", err)
	}
	// Upload 3 (its slot mapped) re-bound to slot 4, whose own upload does not exist.
	re := mustCreate(t, st, Sample(3))
	if _, err := st.Rebind(ctx, re.UploadID, SlotKey(4), func(*auth.Session) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{SlotKey(3), SlotKey(4)} {
		if got, err := st.ResolveSlot(ctx, key, ID(4)); err != nil || got.UploadID != re.UploadID {
			t.Errorf("ResolveSlot of a slot mapped to upload 3 = %q, %v", got.UploadID, err)
		}
	}
	// A partial upload is never a slot's own upload.
	p := Sample(5)
	p.Kind = auth.KindPartial
	mustCreate(t, st, p)
	if got, err := st.ResolveSlot(ctx, SlotKey(9), p.UploadID); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("ResolveSlot with a partial upload's ID = %q, %v; want ErrSessionNotFound", got.UploadID, err)
	}
}

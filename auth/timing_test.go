package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/memstore"
	"github.com/uploadgate/uploadgate/auth/sessiontest"
)

// Timed passes every call to the store and reports each, by operation.
func TestTimed(t *testing.T) {
	var ops []string
	store := auth.Timed(memstore.New(), func(op string, took time.Duration) {
		if took < 0 {
			t.Errorf("%s took %s", op, took)
		}
		ops = append(ops, op)
	})
	ctx := context.Background()
	s := sessiontest.Sample(1)
	if _, created, err := store.Create(ctx, s); err != nil || !created {
		t.Fatalf("Create: %v %v", created, err)
	}
	if _, err := store.Get(ctx, s.UploadID); err != nil {
		t.Fatal(err)
	}
	if _, err := store.LookupSlot(ctx, s.SlotKey); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(ctx, s.UploadID, func(p *auth.Session) error { p.Addrs++; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Expired(ctx, time.Now(), 10); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, s.UploadID); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(ctx, s.UploadID); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if err := store.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"session_create", "session_get", "session_lookup_slot", "session_update", "session_expired", "session_delete", "session_get", "session_ping"}
	if len(ops) != len(want) {
		t.Fatalf("observed %v, want %v", ops, want)
	}
	for i := range want {
		if ops[i] != want[i] {
			t.Fatalf("observed %v, want %v", ops, want)
		}
	}
}

// Timed keeps a SlotCreator one (Sessions.Open then makes one call), and
// times CreateAtSlot as a creation; a store that is none stays none.
func TestTimedSlotCreator(t *testing.T) {
	var ops []string
	observe := func(op string, _ time.Duration) { ops = append(ops, op) }
	mem := memstore.New()
	if _, ok := auth.Timed(mem, observe).(auth.SlotCreator); ok {
		t.Fatal("the timed memstore claims CreateAtSlot, which memstore lacks")
	}
	st := &slotCreatorStore{Store: mem}
	timed := auth.Timed(st, observe)
	if _, ok := timed.(auth.SlotCreator); !ok {
		t.Fatal("the timed store of a SlotCreator is none")
	}
	m := auth.NewSessions(timed, auth.DefaultPolicy(), sessiontest.NewClock().Now)
	slot := sessiontest.Slot("d1/photo.jpg", 4096, "sig")
	if _, created, err := m.Open(context.Background(), slot, auth.DeriveUploadID(sessIDKey, slot.Path), auth.KindWhole, ""); err != nil || !created {
		t.Fatalf("Open: %v, %v", created, err)
	}
	if st.calls != 1 || len(ops) != 1 || ops[0] != "session_create" {
		t.Errorf("Open made %d CreateAtSlot calls and observed %v; want one, timed as session_create", st.calls, ops)
	}
}

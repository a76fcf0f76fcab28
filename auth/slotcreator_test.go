package auth_test

import (
	"context"
	"testing"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/memstore"
	"github.com/uploadgate/uploadgate/auth/sessiontest"
)

// slotCreatorStore is a memstore with CreateAtSlot (LookupSlot, then Create:
// enough for one goroutine), which can also report a made-up upload as the
// one a slot is mapped to.
type slotCreatorStore struct {
	auth.Store
	calls int
	fake  string // reported as the other upload when set
}

func (s *slotCreatorStore) CreateAtSlot(ctx context.Context, se auth.Session) (auth.Session, bool, string, error) {
	s.calls++
	if s.fake != "" {
		return auth.Session{}, false, s.fake, nil
	}
	if id, err := s.Store.LookupSlot(ctx, se.SlotKey); err == nil && id != se.UploadID {
		return auth.Session{}, false, id, nil
	}
	stored, created, err := s.Store.Create(ctx, se)
	return stored, created, "", err
}

// TestOpenWithSlotCreator: Open of a whole upload asks a SlotCreator in one
// call, follows a re-bound slot to its upload, and creates the session when
// the upload the slot named is gone or is not a whole upload's.
func TestOpenWithSlotCreator(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	t.Cleanup(func() { mem.Close() })
	st := &slotCreatorStore{Store: mem}
	m := auth.NewSessions(st, auth.DefaultPolicy(), sessiontest.NewClock().Now)

	orig := sessiontest.Slot("d1/photo.jpg", 4096, "sig-orig")
	o, created, err := m.Open(ctx, orig, auth.DeriveUploadID(sessIDKey, orig.Path), auth.KindWhole, "")
	if err != nil || !created || st.calls != 1 {
		t.Fatalf("Open: %v, %v after %d CreateAtSlot calls; want created after 1", created, err, st.calls)
	}
	fresh := sessiontest.Slot("d2/photo.jpg", 4096, "sig-fresh")
	if _, err := m.Rebind(ctx, o.UploadID, fresh, ""); err != nil {
		t.Fatal(err)
	}
	freshID := auth.DeriveUploadID(sessIDKey, fresh.Path)
	if got, created, err := m.Open(ctx, fresh, freshID, auth.KindWhole, ""); err != nil || created || got.UploadID != o.UploadID {
		t.Fatalf("Open at a re-bound slot: %q, %v, %v; want the re-bound upload", got.UploadID, created, err)
	}

	// The upload the slot named is gone: Open creates the session.
	st.fake = auth.DeriveUploadID(sessIDKey, "gone")
	other := sessiontest.Slot("d3/doc.pdf", 10, "sig")
	otherID := auth.DeriveUploadID(sessIDKey, other.Path)
	if got, created, err := m.Open(ctx, other, otherID, auth.KindWhole, ""); err != nil || !created || got.UploadID != otherID {
		t.Fatalf("Open at a slot that names a gone upload: %q, %v, %v; want its own session created", got.UploadID, created, err)
	}
	// A partial upload's session: not followed either.
	partialID, err := auth.NewRandomUploadID()
	if err != nil {
		t.Fatal(err)
	}
	st.fake = ""
	if _, created, err := m.Open(ctx, orig, partialID, auth.KindPartial, ""); err != nil || !created {
		t.Fatalf("Open of a partial upload: %v, %v", created, err)
	}
	st.fake = partialID
	third := sessiontest.Slot("d4/a.txt", 10, "sig")
	thirdID := auth.DeriveUploadID(sessIDKey, third.Path)
	if got, created, err := m.Open(ctx, third, thirdID, auth.KindWhole, ""); err != nil || !created || got.UploadID != thirdID {
		t.Fatalf("Open at a slot that names a partial upload: %q, %v, %v; want its own session created", got.UploadID, created, err)
	}
}

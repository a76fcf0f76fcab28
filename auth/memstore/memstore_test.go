package memstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/memstore"
	"github.com/uploadgate/uploadgate/auth/sessiontest"
)

func TestMemoryStoreContract(t *testing.T) {
	sessiontest.Run(t, func(t *testing.T) auth.Store {
		st := memstore.New()
		t.Cleanup(func() {
			if err := st.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return st
	})
}

func TestMemoryStoreClosed(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	if _, _, err := st.Create(ctx, sessiontest.Sample(1)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	noop := func(*auth.Session) error { return nil }
	calls := []struct {
		name string
		call func() error
	}{
		{"Ping", func() error { return st.Ping(ctx) }},
		{"Get", func() error { _, err := st.Get(ctx, sessiontest.ID(1)); return err }},
		{"Create", func() error { _, _, err := st.Create(ctx, sessiontest.Sample(2)); return err }},
		{"Update", func() error { _, err := st.Update(ctx, sessiontest.ID(1), noop); return err }},
		{"Delete", func() error { return st.Delete(ctx, sessiontest.ID(1)) }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, auth.ErrStoreUnavailable) {
			t.Errorf("%s after Close: err = %v, want ErrStoreUnavailable", c.name, err)
		}
	}
}

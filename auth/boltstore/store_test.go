package boltstore_test

import (
	"testing"

	"github.com/uploadgate/uploadgate/auth/boltstore"
	"github.com/uploadgate/uploadgate/auth/internal/kvstore/kvstoretest"
)

var opener = kvstoretest.Opener{
	Name: "sessions.db",
	OpenErr: func(path string) (kvstoretest.Store, error) {
		st, err := boltstore.Open(path)
		if err != nil {
			return nil, err
		}
		return st, nil
	},
	ErrInUse: boltstore.ErrInUse,
}

func TestBoltStore(t *testing.T) { kvstoretest.Run(t, opener) }

package boltstore_test

import (
	"testing"

	"github.com/uploadgate/uploadgate/auth/internal/kvstore/kvstoretest"
)

// BenchmarkBoltStoreUpload: see kvstoretest.BenchUpload.
func BenchmarkBoltStoreUpload(b *testing.B) { kvstoretest.BenchUpload(b, opener) }

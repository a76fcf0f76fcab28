package sessiontest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/uploadgate/uploadgate/auth"
)

// footprintIDKey derives the upload IDs of CompleteUploads.
var footprintIDKey = []byte("footprint-footprint-footprint-32")

// Policy is the default policy with the IDKey that CompleteUploads derives
// upload IDs with: a slot leads to its own upload without a stored mapping,
// as in the gateway.
func Policy() auth.Policy {
	p := auth.DefaultPolicy()
	p.IDKey = footprintIDKey
	return p
}

// CompleteUploads opens n whole uploads through a session manager on st, as
// the gateway does (a v2 slot under a random-looking directory, a client
// address), and completes each: what the store holds for n complete uploads.
// It writes from 32 goroutines, as concurrent uploads do.
func CompleteUploads(t testing.TB, m *auth.Sessions, n int) {
	t.Helper()
	CompleteUploadsFrom(t, m, 0, n)
}

// CompleteUploadsFrom is CompleteUploads for the uploads numbered from
// first on (other slots, other upload IDs).
func CompleteUploadsFrom(t testing.TB, m *auth.Sessions, first, n int) {
	t.Helper()
	ctx := context.Background()
	var (
		wg   sync.WaitGroup
		once sync.Once
		fail error
	)
	next := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				path := fmt.Sprintf("%040x/IMG_%06d.jpg", uint64(i)*0x9e3779b97f4a7c15, i)
				slot := Slot(path, 1<<20+int64(i), path)
				id := auth.DeriveUploadID(footprintIDKey, path)
				addr := fmt.Sprintf("198.51.100.%d", i%250)
				_, _, err := m.Open(ctx, slot, id, auth.KindWhole, addr)
				if err == nil {
					_, err = m.Complete(ctx, id)
				}
				if err != nil {
					once.Do(func() { fail = err })
				}
			}
		}()
	}
	for i := range n {
		next <- first + i
	}
	close(next)
	wg.Wait()
	if fail != nil {
		t.Fatal(fail)
	}
}

// ForgetDue does with the sessions due at the manager's clock what the
// gateway's clean-up does with them in the session store: the record of a
// complete file whose history is over is forgotten if the upload's ID
// derives from its slot path (as CompleteUploads derives them) and kept
// otherwise; any other due session is forgotten (the clean-up removes its
// upload too). It returns how many records it forgot and how many of those
// were of files kept.
func ForgetDue(t testing.TB, m *auth.Sessions) (forgot, keptFile int) {
	t.Helper()
	ctx := context.Background()
	const batch = 500
	for {
		due, err := m.Due(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		// As concurrent clean-ups would: the store groups the writes.
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			fail error
		)
		for _, s := range due {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if s.KeepFile && auth.DeriveUploadID(footprintIDKey, s.SlotPath) != s.UploadID {
					_, err = m.KeepRecord(ctx, s.UploadID)
				} else if err = m.Forget(ctx, s.UploadID); err == nil {
					mu.Lock()
					forgot++
					if s.KeepFile {
						keptFile++
					}
					mu.Unlock()
				}
				if err != nil {
					mu.Lock()
					fail = err
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if fail != nil {
			t.Fatal(fail)
		}
		if len(due) < batch {
			return forgot, keptFile
		}
	}
}

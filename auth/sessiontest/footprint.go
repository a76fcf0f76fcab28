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

// CompleteUploads opens n whole uploads through a session manager on st, as
// the gateway does (a v2 slot under a random-looking directory, a client
// address), and completes each: what the store holds for n complete uploads.
// It writes from 32 goroutines, as concurrent uploads do.
func CompleteUploads(t testing.TB, m *auth.Sessions, n int) {
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
		next <- i
	}
	close(next)
	wg.Wait()
	if fail != nil {
		t.Fatal(fail)
	}
}

package kvstoretest

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// BenchUpload measures what one upload costs an engine's session store: Create, then the Update that marks it complete, from 16 concurrent
// writers, in a database that already holds benchPrefill sessions. Besides
// wall time per upload it reports the process's CPU time per upload (user +
// system, from getrusage), since on a loaded machine the CPU a write takes
// is what limits how many uploads a second the gateway takes.
func BenchUpload(b *testing.B, o Opener) {
	ctx := context.Background()
	st, err := o.OpenErr(filepath.Join(b.TempDir(), o.Name))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	var n atomic.Int64
	create := func() string {
		i := n.Add(1)
		id, err := auth.NewRandomUploadID()
		if err != nil {
			b.Fatal(err)
		}
		path := fmt.Sprintf("%d/file-%d.jpg", i, i)
		s := auth.Session{
			UploadID: id, SlotKey: auth.SlotKey(path), SlotPath: path,
			Kind: auth.KindWhole, Protocol: auth.ProtoV2, Size: 4 << 20, Type: "image/jpeg",
			Created: now, LastSeen: now, FirstCreated: now,
			IdleDeadline: now.Add(24 * time.Hour), AbsDeadline: now.Add(72 * time.Hour),
			SweepAt:  now.Add(25*time.Hour + time.Duration(i)*time.Millisecond),
			LastAddr: "192.0.2.7",
		}
		if _, _, err := st.Create(ctx, s); err != nil {
			b.Error(err)
		}
		return id
	}
	const benchPrefill = 20000
	for range benchPrefill / 100 { // prefill in groups, like concurrent creations
		done := make(chan struct{})
		for range 100 {
			go func() { create(); done <- struct{}{} }()
		}
		for range 100 {
			<-done
		}
	}
	b.SetParallelism(8) // 16 writers on two cores
	before, commits := cpuTime(b), st.Commits()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := create()
			if _, err := st.Update(ctx, id, func(s *auth.Session) error {
				s.Complete, s.CompletedAt = true, time.Now()
				s.SweepAt = s.CompletedAt.Add(30 * 24 * time.Hour)
				return nil
			}); err != nil {
				b.Error(err)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((cpuTime(b)-before).Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(st.Commits()-commits)/float64(b.N), "commits/op")
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

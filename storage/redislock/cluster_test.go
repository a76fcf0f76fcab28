package redislock

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/uploadgate/uploadgate/internal/testredis"
	"github.com/uploadgate/uploadgate/storage/lockertest"
)

// The Locker on a real three-master Redis Cluster: the lock keys (no hash
// tag, each hashed on its whole name) spread over the masters, and the
// release notices, which Unlock publishes from a script on the master that
// holds the lock's key, reach the subscribers whichever node they are
// connected to (a plain PUBLISH in Cluster is forwarded to every node).
func TestCluster(t *testing.T) {
	cl := testredis.StartCluster(t, 3)
	newClusterClient := func(t *testing.T) *redis.ClusterClient {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("contract", func(t *testing.T) {
		lockertest.Run(t, func(t *testing.T) handler.Locker {
			opts := Options{KeyPrefix: uniquePrefix(), PollInterval: 100 * time.Millisecond}
			return &twoInstances{ls: [2]*Locker{
				newLocker(t, newClusterClient(t), opts),
				newLocker(t, newClusterClient(t), opts),
			}}
		})
	})

	t.Run("release notices across nodes", func(t *testing.T) {
		// Polling and re-publishing far beyond the bound: only pub/sub can meet it.
		opts := Options{KeyPrefix: uniquePrefix(), PollInterval: 20 * time.Second, RepublishInterval: 20 * time.Second}
		a := newLocker(t, newClusterClient(t), opts)
		b := newLocker(t, newClusterClient(t), opts)
		measureHandOffs(t, a, b, "cluster")
	})

	t.Run("keys on every master", func(t *testing.T) {
		const n = 300
		l := newLocker(t, newClusterClient(t), Options{KeyPrefix: "spread:"})
		before := make([]int, len(cl.Masters))
		for i := range cl.Masters {
			before[i] = cl.DBSize(t, i)
		}
		var held []handler.Lock
		for i := range n {
			k := lockOf(t, l, fmt.Sprintf("upload%03d", i))
			lockWithin(t, k, time.Second, func() {})
			held = append(held, k)
		}
		for i := range cl.Masters {
			got := cl.DBSize(t, i) - before[i]
			t.Logf("master %d: %d of %d lock keys", i, got, n)
			if got*5 < n {
				t.Errorf("master %d holds %d of %d lock keys; want at least a fifth", i, got, n)
			}
		}
		for _, k := range held {
			if err := k.Unlock(); err != nil {
				t.Fatal(err)
			}
		}
		ctx := context.Background()
		for i := range n {
			if h, err := l.Held(ctx, fmt.Sprintf("upload%03d", i)); err != nil || h {
				t.Fatalf("Held after Unlock: %v, %v", h, err)
			}
		}
	})
}

package redisstore_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/redisstore"
	"github.com/uploadgate/uploadgate/auth/sessiontest"
	"github.com/uploadgate/uploadgate/internal/testredis"
)

// footprintUploads is how many complete uploads the footprint test stores.
const footprintUploads = 4000

// redisKeyBytes sums MEMORY USAGE (all samples) over the keys with prefix.
func redisKeyBytes(t *testing.T, c *redis.Client, prefix string) (total int64, keys int) {
	t.Helper()
	ctx := context.Background()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		n, err := c.MemoryUsage(ctx, iter.Val(), 0).Result()
		if err != nil {
			t.Fatal(err)
		}
		total += n
		keys++
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return total, keys
}

// redisUsedMemory is INFO memory's used_memory.
func redisUsedMemory(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("INFO memory without used_memory")
	return 0
}

// TestRedisStoreFootprint measures the memory that Redis keeps per complete
// upload under the default policy (go test -run Footprint -v shows it):
// MEMORY USAGE of the store's keys, and the growth of used_memory, each
// divided by the number of uploads.
func TestRedisStoreFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("stores thousands of uploads")
	}
	for _, layout := range []struct {
		name    string
		sharded bool
		// listpack: the server's hash-max-listpack-value (0: Redis's
		// default, 64), which docs/scaling.md recommends raising to 256.
		listpack int
		ceiling  float64
	}{
		{"single-node layout", false, 0, 480},
		{"sharded layout", true, 0, 480},
		{"single-node layout, hash-max-listpack-value 256", false, 256, 300},
		{"sharded layout, hash-max-listpack-value 256", true, 256, 300},
	} {
		t.Run(layout.name, func(t *testing.T) {
			srv := testredis.Start(t)
			client := newRedisClient(t, srv.Addr)
			if layout.listpack > 0 {
				// A hash with a value longer than this is stored as a hash
				// table instead of a listpack: a session's record often is.
				if err := client.ConfigSet(context.Background(), "hash-max-listpack-value", strconv.Itoa(layout.listpack)).Err(); err != nil {
					t.Fatal(err)
				}
			}
			const prefix = "footprint:"
			st := redisstore.New(client, redisstore.Options{KeyPrefix: prefix, Sharded: layout.sharded})
			before := redisUsedMemory(t, client)
			clock := sessiontest.NewClock()
			m := auth.NewSessions(st, sessiontest.Policy(), clock.Now)
			sessiontest.CompleteUploads(t, m, footprintUploads)
			after := redisUsedMemory(t, client)
			total, keys := redisKeyBytes(t, client, prefix)
			t.Logf("Redis, %s, %d complete uploads: %d keys, MEMORY USAGE %.0f bytes per upload, used_memory grew %.0f bytes per upload",
				layout.name, footprintUploads, keys, float64(total)/footprintUploads, float64(after-before)/footprintUploads)
			// A guard against growth: 1,576 with JSON records, 888 with the
			// compact record in the single-node layout, 576 since the upload's
			// slot set no longer lists the slot its record names, 408 since a
			// slot leads to its own upload without a mapping (one key per
			// upload: the session hash; 216 bytes as a listpack).
			if perUpload := float64(total) / footprintUploads; perUpload > layout.ceiling {
				t.Errorf("MEMORY USAGE %.0f bytes per complete upload; want at most %.0f", perUpload, layout.ceiling)
			}
		})
	}
}

// TestRedisStoreHistoryBound shows that under a history bound Redis stops
// growing: past the bound the clean-up leaves none of the store's keys.
func TestRedisStoreHistoryBound(t *testing.T) {
	srv := testredis.Start(t)
	client := newRedisClient(t, srv.Addr)
	const prefix = "history:"
	st := redisstore.New(client, redisstore.Options{KeyPrefix: prefix})
	clock := sessiontest.NewClock()
	p := sessiontest.Policy()
	p.History = time.Hour
	m := auth.NewSessions(st, p, clock.Now)
	const perRound = 200
	for r := range 3 {
		sessiontest.CompleteUploadsFrom(t, m, r*perRound, perRound)
		if _, keys := redisKeyBytes(t, client, prefix); keys == 0 {
			t.Fatalf("round %d: no keys for complete uploads within the history", r)
		}
		clock.Advance(p.MaxTTL + time.Minute)
		if forgot, kept := sessiontest.ForgetDue(t, m); forgot != perRound || kept != perRound {
			t.Fatalf("round %d: forgot %d records (%d keeping their file), want %d", r, forgot, kept, perRound)
		}
		if total, keys := redisKeyBytes(t, client, prefix); keys != 0 {
			t.Fatalf("round %d: %d keys (%d bytes) left past the history", r, keys, total)
		}
	}
}

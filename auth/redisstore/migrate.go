package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/uploadgate/uploadgate/auth/internal/record"
)

// migrateBatch is how many keys Migrate lists at a time.
const migrateBatch = 500

// Migrate moves the sessions that the single-node layout holds under the
// store's key prefix into the sharded layout, and returns how many it moved.
// It does nothing on a store of the single-node layout. On a Cluster it
// first asks for the number of keys in the hash slot of "{sessions}" (every
// key of the single-node layout is there), so that a start with nothing to
// migrate costs one command per master.
//
// Each session is moved in this order: its slot mappings are claimed in the
// sharded layout (SET NX, when they still name the upload), the session is
// created there unless it exists, with its other slots listed, and then its
// keys of the single-node layout are deleted as Delete deletes them. A crash
// in between leaves the session in both layouts, and the next Migrate
// finishes the move. No gateway of an older version may write sessions while
// it runs: stop them all first (docs/scaling.md).
func (r *Store) Migrate(ctx context.Context) (int, error) {
	const op = "migrate sessions to the sharded layout"
	if err := r.begin(ctx, op); err != nil {
		return 0, err
	}
	if !r.sharded {
		return 0, nil
	}
	legacy := New(r.client, Options{KeyPrefix: r.base, ExpiryMargin: r.margin})
	ids, err := r.legacyIDs(ctx)
	if err != nil {
		return 0, unavailable(op, err)
	}
	n := 0
	for _, id := range ids {
		moved, err := r.migrateOne(ctx, legacy, id)
		if err != nil {
			return n, fmt.Errorf("%s: %w", op, err)
		}
		if moved {
			n++
		}
	}
	return n, nil
}

// legacyIDs lists the upload IDs of the sessions in the single-node layout.
func (r *Store) legacyIDs(ctx context.Context) ([]string, error) {
	match := r.prefix + "session:"
	var ids []string
	collect := func(keys []string) {
		for _, k := range keys {
			if id, ok := strings.CutPrefix(k, match); ok {
				ids = append(ids, id)
			}
		}
	}
	cc, ok := r.client.(*redis.ClusterClient)
	if !ok {
		iter := r.client.Scan(ctx, 0, match+"*", migrateBatch).Iterator()
		for iter.Next(ctx) {
			collect([]string{iter.Val()})
		}
		return ids, iter.Err()
	}
	slot := int(crc16(strings.Trim(redisHashTag, "{}")) % 16384)
	var (
		mu  sync.Mutex
		per [][]string
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		count, err := m.ClusterCountKeysInSlot(ctx, slot).Result()
		if err != nil || count == 0 {
			return err
		}
		keys, err := m.ClusterGetKeysInSlot(ctx, slot, int(count)).Result()
		if err != nil {
			return err
		}
		mu.Lock() // ForEachMaster asks the masters concurrently
		defer mu.Unlock()
		per = append(per, keys)
		return nil
	})
	for _, keys := range per {
		collect(keys)
	}
	return ids, err
}

// migrateOne moves the session of id, if it is still in the single-node
// layout.
func (r *Store) migrateOne(ctx context.Context, legacy *Store, id string) (bool, error) {
	snap, err := legacy.read(ctx, id, "")
	if err != nil {
		return false, unavailable("read session", err)
	}
	if !snap.found {
		return false, nil
	}
	s, err := record.Decode(id, []byte(snap.record))
	if err != nil {
		return false, err
	}
	expiry := r.expireAt(s)
	// The slots still mapped to the upload.
	var slots []string
	for _, name := range snap.slots {
		to, err := r.client.Get(ctx, name).Result()
		if errors.Is(err, redis.Nil) || err == nil && to != id {
			continue
		}
		if err != nil {
			return false, unavailable("read slot mapping", err)
		}
		slots = append(slots, strings.TrimPrefix(name, r.prefix+"slot:"))
	}
	var fields []any
	for _, k := range slots {
		if err := r.client.SetArgs(ctx, r.shardSlot(k), id, claimArgs(expiry)).Err(); err != nil && !errors.Is(err, redis.Nil) {
			return false, unavailable("map slot", err)
		}
		if k != s.SlotKey {
			fields = append(fields, shardSlotField+k)
		}
	}
	entry, score := redisSweepEntry(s)
	keys := []string{r.shardSession(id), r.shardSweepOf(id)}
	args := append([]any{snap.record, newRedisVersion(), entry, score, expiry}, fields...)
	if err := shardCreate.Run(ctx, r.client, keys, args...).Err(); err != nil {
		return false, unavailable("create session", err)
	}
	if err := legacy.Delete(ctx, id); err != nil {
		return false, err
	}
	return true, nil
}

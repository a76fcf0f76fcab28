package redisstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/internal/record"
)

// shardedBuckets is the number of sweep index buckets of the sharded layout.
// It is part of the key layout: changing it moves every session.
const shardedBuckets = 256

// bucketTags returns the hash tag of each bucket: a short text whose CRC16
// (the Redis Cluster key hash) falls in the bucket's 1/shardedBuckets of the
// hash slots, found by counting up (deterministic).
var bucketTags = sync.OnceValue(func() []string {
	const slots = 16384
	tags := make([]string, shardedBuckets)
	width := slots / shardedBuckets
	for b := range tags {
		for j := 0; ; j++ {
			tag := strconv.Itoa(b) + "." + strconv.Itoa(j)
			if int(crc16(tag)%slots)/width == b {
				tags[b] = tag
				break
			}
		}
	}
	return tags
})

// crc16 is CRC-16/XMODEM, Redis Cluster's key hash.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// bucket returns the bucket of an upload.
func bucket(uploadID string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(uploadID))
	return int(h.Sum32() % shardedBuckets)
}

func (r *Store) shardBucketPrefix(b int) string { return r.base + "{" + bucketTags()[b] + "}:" }
func (r *Store) shardSession(uploadID string) string {
	return r.shardBucketPrefix(bucket(uploadID)) + "session:" + uploadID
}
func (r *Store) shardSweepOf(uploadID string) string {
	return r.shardBucketPrefix(bucket(uploadID)) + "sweep"
}
func (r *Store) shardSlot(slotKey string) string { return r.base + "slot:" + slotKey }

// shardSlotField is the session hash field that lists a mapped slot.
const shardSlotField = "m:"

// shardCreateScript creates a session unless it exists.
//
// KEYS: session, sweep index. ARGV: record, version, sweep entry ("" none),
// sweep score, expiry, then the hash fields of slots to list (a migrated
// session's).
// Returns {1} when created (also when this very call was applied already),
// else {0, the session's fields as HGETALL returns them}.
const shardCreateScript = redisExpireFunc + `
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'v') == ARGV[2] then return {1} end
  return {0, redis.call('HGETALL', KEYS[1])}
end
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'v', ARGV[2], 'w', ARGV[3])
for i = 6, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], '') end
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3]) end
expire(KEYS[1], ARGV[5])
return {1}
`

// shardPutScript stores a session read at version ARGV[1] unless it changed
// since.
//
// KEYS: session, sweep index. ARGV: read version, new version, record, sweep
// entry ("" none), sweep score, expiry, then the hash fields of slots to list.
// Returns 1 when stored (or when this very call was applied already), 0 when
// the session changed since it was read, -1 when it is gone.
const shardPutScript = redisExpireFunc + redisMoveSweep + `
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if v == ARGV[2] then return 1 end
if v ~= ARGV[1] then return 0 end
move_sweep()
for i = 7, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], '') end
expire(KEYS[1], ARGV[6])
return 1
`

// shardDeleteScript deletes a session read at version ARGV[1] ("" for a
// missing one) and its sweep index entry, unless it changed since.
//
// KEYS: session, sweep index. Returns 1 when done, 0 when it changed.
const shardDeleteScript = `
local v = redis.call('HGET', KEYS[1], 'v') or ''
if v ~= ARGV[1] then return 0 end
local w = redis.call('HGET', KEYS[1], 'w')
if w and w ~= '' then redis.call('ZREM', KEYS[2], w) end
redis.call('DEL', KEYS[1])
return 1
`

// shardUnmapScript deletes a slot mapping if it names the upload ARGV[1].
const shardUnmapScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0
`

// shardExpireScript sets the expiry of a slot mapping (ARGV[2], "" none) if
// it names the upload ARGV[1].
const shardExpireScript = redisExpireFunc + `
if redis.call('GET', KEYS[1]) == ARGV[1] then expire(KEYS[1], ARGV[2]) end
return 1
`

// scripts of the sharded layout.
var (
	shardCreate = redis.NewScript(shardCreateScript)
	shardPut    = redis.NewScript(shardPutScript)
	shardDelete = redis.NewScript(shardDeleteScript)
	shardUnmap  = redis.NewScript(shardUnmapScript)
	shardExpire = redis.NewScript(shardExpireScript)
)

// scriptCall is a script queued in a pipeline with EVALSHA. A master that
// does not have the script cached (NOSCRIPT: it restarted, or never ran it)
// gets it again with EVAL after the pipeline.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
	cmd    *redis.Cmd
}

func (c *scriptCall) queue(ctx context.Context, p redis.Pipeliner) {
	c.cmd = c.script.EvalSha(ctx, p, c.keys, c.args...)
}

// settle runs the script with EVAL if EVALSHA found no cached script. The
// scripts are idempotent, so running one late changes no outcome.
func (c *scriptCall) settle(ctx context.Context, client redis.UniversalClient) {
	if err := c.cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		c.cmd = c.script.Eval(ctx, client, c.keys, c.args...)
	}
}

// exec runs the pipeline p of calls (and of other commands queued in p)
// and settles the calls. The errors are in the commands.
func (r *Store) exec(ctx context.Context, p redis.Pipeliner, calls ...*scriptCall) {
	_, _ = p.Exec(ctx)
	for _, c := range calls {
		c.settle(ctx, r.client)
	}
}

// shardSnapshot is a session as a write of the sharded layout read it.
type shardSnapshot struct {
	found   bool
	record  string
	version string
	listed  []string // the slot keys of the "m:" fields
}

// parseShardFields reads HGETALL's answer (as a map) into a snapshot.
func parseShardFields(fields map[string]string) shardSnapshot {
	var snap shardSnapshot
	rec, okRec := fields["d"]
	ver, okVer := fields["v"]
	if !okRec || !okVer {
		return snap
	}
	snap.found, snap.record, snap.version = true, rec, ver
	for f := range fields {
		if k, ok := strings.CutPrefix(f, shardSlotField); ok {
			snap.listed = append(snap.listed, k)
		}
	}
	slices.Sort(snap.listed)
	return snap
}

// candidates are the slots that may be mapped to the session s: its SlotKey
// and the listed ones.
func candidates(s auth.Session, listed []string) []string {
	var out []string
	for _, k := range append([]string{s.SlotKey}, listed...) {
		if k != "" && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// shardedCreate is Create in the sharded layout, and CreateAtSlot when
// atSlot: the slot's mapping is read in the same pipeline, before the claim,
// and a session created while the slot was mapped to another upload is
// deleted again.
func (r *Store) shardedCreate(ctx context.Context, op string, s auth.Session, atSlot bool) (auth.Session, bool, string, error) {
	rec, stored, err := encode(s)
	if err != nil {
		return auth.Session{}, false, "", fmt.Errorf("%s: %w", op, err)
	}
	entry, score := redisSweepEntry(stored)
	expiry := r.expireAt(stored)
	version := newRedisVersion()
	p := r.client.Pipeline()
	var prior *redis.StringCmd
	if atSlot {
		prior = p.Get(ctx, r.shardSlot(s.SlotKey))
	}
	var claim *redis.StatusCmd
	if record.StoresMapping(s) {
		claim = p.SetArgs(ctx, r.shardSlot(s.SlotKey), s.UploadID, claimArgs(expiry))
	}
	create := &scriptCall{script: shardCreate,
		keys: []string{r.shardSession(s.UploadID), r.shardSweepOf(s.UploadID)},
		args: []any{rec, version, entry, score, expiry}}
	create.queue(ctx, p)
	r.exec(ctx, p, create)
	claimed := false
	if claim != nil {
		ok, err := claim.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return auth.Session{}, false, "", unavailable(op, err)
		}
		claimed = ok == "OK"
	}
	res, err := create.cmd.Slice()
	if err != nil {
		if claimed {
			r.withdraw(ctx, s.SlotKey, s.UploadID)
		}
		return auth.Session{}, false, "", unavailable(op, err)
	}
	created := len(res) == 1 && res[0] == int64(1)
	if prior != nil && !claimed {
		other, err := prior.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return auth.Session{}, false, "", unavailable(op, err)
		}
		if other != "" && other != s.UploadID {
			// Mapped to another upload: this call creates nothing.
			if created {
				keys := []string{r.shardSession(s.UploadID), r.shardSweepOf(s.UploadID)}
				if err := shardDelete.Run(ctx, r.client, keys, version).Err(); err != nil {
					return auth.Session{}, false, "", unavailable(op, err)
				}
			}
			return auth.Session{}, false, other, nil
		}
	}
	if created {
		return stored, true, "", nil
	}
	if len(res) != 2 || res[0] != int64(0) {
		return auth.Session{}, false, "", fmt.Errorf("%s: unexpected script result of %d values", op, len(res))
	}
	snap, err := shardSnapshotOf(res[1])
	if err != nil || !snap.found {
		return auth.Session{}, false, "", fmt.Errorf("%s: unexpected script result: %w", op, err)
	}
	old, err := record.Decode(s.UploadID, []byte(snap.record))
	if err != nil {
		return auth.Session{}, false, "", fmt.Errorf("%s: %w", op, err)
	}
	if claimed && !slices.Contains(candidates(old, snap.listed), s.SlotKey) {
		// The session existed: this Create maps nothing.
		if err := r.unmap(ctx, s.SlotKey, s.UploadID); err != nil {
			return auth.Session{}, false, "", unavailable(op, err)
		}
	}
	return old, false, "", nil
}

// claimArgs are the arguments of the SET NX that claims a slot.
func claimArgs(expiry string) redis.SetArgs {
	a := redis.SetArgs{Mode: "NX"}
	if expiry != "" {
		ms, _ := strconv.ParseInt(expiry, 10, 64)
		a.ExpireAt = time.UnixMilli(ms)
	}
	return a
}

// shardSnapshotOf reads the HGETALL answer that a script returned (a flat
// list of fields and values).
func shardSnapshotOf(v any) (shardSnapshot, error) {
	list, ok := v.([]any)
	if !ok || len(list)%2 != 0 {
		return shardSnapshot{}, errors.New("not a list of fields")
	}
	fields := make(map[string]string, len(list)/2)
	for i := 0; i < len(list); i += 2 {
		k, ok1 := list[i].(string)
		val, ok2 := list[i+1].(string)
		if !ok1 || !ok2 {
			return shardSnapshot{}, errors.New("a field that is not text")
		}
		fields[k] = val
	}
	return parseShardFields(fields), nil
}

// unmap deletes the mapping of slotKey if it names uploadID.
func (r *Store) unmap(ctx context.Context, slotKey, uploadID string) error {
	return shardUnmap.Run(ctx, r.client, []string{r.shardSlot(slotKey)}, uploadID).Err()
}

// withdraw is unmap after a failure, which it must not hide: a mapping it
// cannot delete expires with the session's expiry.
func (r *Store) withdraw(ctx context.Context, slotKey, uploadID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = r.unmap(ctx, slotKey, uploadID)
}

// shardRead reads the session of uploadID and, for a rebind, the upload
// that slotKey is mapped to ("" none), in one pipeline.
func (r *Store) shardRead(ctx context.Context, uploadID, slotKey string) (shardSnapshot, string, error) {
	p := r.client.Pipeline()
	all := p.HGetAll(ctx, r.shardSession(uploadID))
	var mapped *redis.StringCmd
	if slotKey != "" {
		mapped = p.Get(ctx, r.shardSlot(slotKey))
	}
	_, _ = p.Exec(ctx)
	fields, err := all.Result()
	if err != nil {
		return shardSnapshot{}, "", err
	}
	var to string
	if mapped != nil {
		to, err = mapped.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return shardSnapshot{}, "", err
		}
	}
	return parseShardFields(fields), to, nil
}

// shardedModify is Update (slotKey "") and Rebind in the sharded layout.
func (r *Store) shardedModify(ctx context.Context, op, uploadID, slotKey string, fn func(*auth.Session) error) (auth.Session, error) {
	claimed := false // this call claimed slotKey
	fail := func(err error) (auth.Session, error) {
		if claimed {
			r.withdraw(ctx, slotKey, uploadID)
		}
		return auth.Session{}, err
	}
	for attempt := range redisMaxWriteAttempts {
		if err := redisBackoff(ctx, attempt); err != nil {
			return fail(fmt.Errorf("%s: %w", op, err))
		}
		snap, mapped, err := r.shardRead(ctx, uploadID, slotKey)
		if err != nil {
			return fail(unavailable(op, err))
		}
		if !snap.found {
			return fail(fmt.Errorf("%s: %w", op, auth.ErrSessionNotFound))
		}
		if slotKey != "" && mapped != "" && mapped != uploadID {
			return fail(fmt.Errorf("%s: %w", op, auth.ErrSlotTaken))
		}
		old, err := record.Decode(uploadID, []byte(snap.record))
		if err != nil {
			return fail(fmt.Errorf("%s: %w", op, err))
		}
		s := old
		if err := fn(&s); err != nil {
			return fail(fmt.Errorf("%s: %w", op, err))
		}
		if s.UploadID != uploadID {
			return fail(fmt.Errorf("%s: %w", op, record.ErrUploadIDChanged))
		}
		rec, stored, err := encode(s)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", op, err))
		}
		if slotKey != "" && mapped == "" {
			ok, err := r.client.SetArgs(ctx, r.shardSlot(slotKey), uploadID, claimArgs(r.expireAt(stored))).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return fail(unavailable(op, err))
			}
			if ok != "OK" {
				continue // mapped meanwhile: read again
			}
			claimed = true
		}
		// List the slot being bound, and the record's slot should fn move it:
		// every slot that can be mapped to the upload stays a candidate.
		var list []any
		for _, k := range []string{slotKey, old.SlotKey} {
			if k != "" && k != stored.SlotKey && !slices.Contains(snap.listed, k) {
				list = append(list, shardSlotField+k)
			}
		}
		expiry := r.expireAt(stored)
		p := r.client.Pipeline()
		put := &scriptCall{script: shardPut,
			keys: []string{r.shardSession(uploadID), r.shardSweepOf(uploadID)},
			args: append([]any{snap.version, newRedisVersion(), rec, "", "", expiry}, list...)}
		put.args[3], put.args[4] = redisSweepEntry(stored)
		put.queue(ctx, p)
		calls := []*scriptCall{put}
		if expiry != r.expireAt(old) || slotKey != "" {
			for _, k := range candidates(stored, append(slices.Clone(snap.listed), old.SlotKey, slotKey)) {
				c := &scriptCall{script: shardExpire, keys: []string{r.shardSlot(k)}, args: []any{uploadID, expiry}}
				c.queue(ctx, p)
				calls = append(calls, c)
			}
		}
		r.exec(ctx, p, calls...)
		res, err := put.cmd.Int64()
		if err != nil {
			return fail(unavailable(op, err))
		}
		switch res {
		case 1:
			return stored, nil
		case -1:
			return fail(fmt.Errorf("%s: %w", op, auth.ErrSessionNotFound))
		}
		// 0: changed since read; again (a claim stays: it names the upload).
	}
	return fail(fmt.Errorf("%s: %w: %d conflicting writes in a row", op, auth.ErrStoreUnavailable, redisMaxWriteAttempts))
}

// shardedDelete is Delete in the sharded layout.
func (r *Store) shardedDelete(ctx context.Context, op, uploadID string) error {
	for attempt := range redisMaxWriteAttempts {
		if err := redisBackoff(ctx, attempt); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		snap, _, err := r.shardRead(ctx, uploadID, "")
		if err != nil {
			return unavailable(op, err)
		}
		var slots []string
		if snap.found {
			s, err := record.Decode(uploadID, []byte(snap.record))
			if err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			slots = candidates(s, snap.listed)
		}
		p := r.client.Pipeline()
		del := &scriptCall{script: shardDelete,
			keys: []string{r.shardSession(uploadID), r.shardSweepOf(uploadID)},
			args: []any{snap.version}}
		del.queue(ctx, p)
		calls := []*scriptCall{del}
		for _, k := range slots {
			c := &scriptCall{script: shardUnmap, keys: []string{r.shardSlot(k)}, args: []any{uploadID}}
			c.queue(ctx, p)
			calls = append(calls, c)
		}
		r.exec(ctx, p, calls...)
		for _, c := range calls {
			if err := c.cmd.Err(); err != nil {
				return unavailable(op, err)
			}
		}
		if res, _ := del.cmd.Int64(); res == 1 {
			return nil
		}
	}
	return fmt.Errorf("%s: %w: %d conflicting writes in a row", op, auth.ErrStoreUnavailable, redisMaxWriteAttempts)
}

// shardedDue reads the due entries of every bucket's sweep index (up to limit
// each, in one pipeline) and merges them: up to limit entries in sweep order.
func (r *Store) shardedDue(ctx context.Context, t time.Time, limit int) ([]string, error) {
	p := r.client.Pipeline()
	cmds := make([]*redis.StringSliceCmd, shardedBuckets)
	stop := strconv.FormatInt(redisSweepMillis(t), 10)
	for b := range cmds {
		cmds[b] = p.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: r.shardBucketPrefix(b) + "sweep", Start: "-inf", Stop: stop, ByScore: true, Count: int64(limit),
		})
	}
	_, _ = p.Exec(ctx)
	var all []string
	for _, c := range cmds {
		entries, err := c.Result()
		if err != nil {
			return nil, err
		}
		all = append(all, entries...)
	}
	// An entry's text order is its sweep order (time, then upload ID).
	slices.Sort(all)
	return all[:min(len(all), limit)], nil
}

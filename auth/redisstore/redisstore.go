package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/internal/record"
)

// Store defaults.
const (
	// DefaultKeyPrefix starts the name of every key of a Store.
	DefaultKeyPrefix = "uploadgate:"
	// DefaultExpiryMargin is how long after a session's SweepAt Redis
	// deletes the session by itself if the clean-up has not done so.
	DefaultExpiryMargin = 24 * time.Hour
)

// redisHashTag follows the key prefix in every key name of the single-node
// layout. Redis Cluster hashes only the part of a key between the first "{"
// and the next "}", so every key of that layout lands in the same hash slot:
// the scripts below touch several keys at once (a session, its slot mappings,
// the sweep index), which Cluster allows only within one slot (each script
// gets every key it touches in KEYS, none derived inside the script). On a
// Cluster, that puts every session on one master: the sharded layout
// (Options.Sharded, sharded.go) spreads them instead.
const redisHashTag = "{sessions}"

// Bounds of the optimistic write loop (Update, Rebind, Delete).
const (
	redisMaxWriteAttempts = 200
	redisBackoffBase      = 200 * time.Microsecond
	redisBackoffMax       = 20 * time.Millisecond
	// redisExpiredRounds bounds how often Expired queries again after it pruned
	// stale sweep index entries.
	redisExpiredRounds = 4
)

// Options configure a Store.
type Options struct {
	// KeyPrefix starts every key name (default DefaultKeyPrefix). Gateways
	// that share sessions use the same prefix. It must not contain "{" or "}":
	// the store adds the Cluster hash tag itself.
	KeyPrefix string
	// ExpiryMargin is how long after a session's SweepAt Redis deletes the
	// session and its slot mappings by itself (PEXPIREAT), should the clean-up
	// not have deleted them by then (default DefaultExpiryMargin; negative:
	// never). A session without SweepAt never expires.
	ExpiryMargin time.Duration
	// Sharded selects the sharded key layout, which spreads sessions over the
	// masters of a Redis Cluster (see sharded.go's layout notes in the
	// package documentation). The default, single-node layout keeps every
	// key in one hash slot. The two layouts do not read each other's keys:
	// every gateway that shares sessions must use the same one.
	Sharded bool
}

// Store is an auth.Store in Redis, for several gateway instances that share
// sessions. It works on a single node, with Sentinel and with Cluster (any
// redis.UniversalClient) and needs Redis 6.2 or newer (or a compatible server).
// Every write is one Lua script, which Redis runs atomically; an Update or
// Rebind reads the session, applies its function in Go and commits with a
// script only if the session's version is still the one it read, retrying on
// a conflict (optimistic concurrency, like WATCH/MULTI, but without pinning a
// connection per pending write and with every index change in the same atomic
// step). Scripts are sent with EVALSHA, falling back to EVAL.
//
// Keys of the single-node layout (the sharded one is in the package
// documentation), with P the key prefix followed by the hash tag
// ("uploadgate:{sessions}:"):
//
//	P session:<upload ID>  hash: d = session record, v = version, w = sweep index entry
//	P slot:<slot key>      string: the upload ID the slot is mapped to (none for
//	                       a session created with auth.Session.OwnSlot: its slot
//	                       leads to it by its ID, see ResolveSlot)
//	P slots:<upload ID>    set: the names of the slot keys mapped to the upload,
//	                       but the one its record names (SlotKey); most
//	                       uploads have none
//	P sweep                sorted set of sessions with a SweepAt (see below)
//
// A sweep index entry is 16 hex digits of SweepAt in Unix nanoseconds (sign
// bit flipped, so that text order is time order) followed by the upload ID;
// its score is SweepAt in Unix milliseconds, which a float64 holds exactly (Unix
// nanoseconds it would round). Equal scores sort by entry, so the index is in
// exact SweepAt order, ties by upload ID.
//
// A session with a SweepAt expires (with its slot mappings) ExpiryMargin after
// it, so that Redis never drops a session that the clean-up still needs, nor
// keeps one forever that the clean-up missed; Expired prunes the index entries
// such expiries leave behind. Expiry times are absolute (PEXPIREAT), taken on
// the gateway's clock and applied on Redis's: the margin must exceed any skew
// between them. Run Redis with AOF persistence (appendfsync everysec) and
// maxmemory-policy noeviction.
//
// Every failure of Redis (connection refused, timeout, LOADING, READONLY, OOM …)
// is returned wrapped in auth.ErrStoreUnavailable. A Store is safe for
// concurrent use.
type Store struct {
	client  redis.UniversalClient
	base    string // key prefix
	prefix  string // key prefix and hash tag (single-node layout)
	sharded bool
	margin  time.Duration
	closed  atomic.Bool

	create, put, del, prune *redis.Script
}

var (
	_ auth.Store        = (*Store)(nil)
	_ auth.SlotCreator  = (*Store)(nil)
	_ auth.SlotResolver = (*Store)(nil)
)

// New returns a store that keeps sessions in Redis through client,
// which stays the caller's: Close does not close it. It panics if
// opts.KeyPrefix contains a brace.
func New(client redis.UniversalClient, opts Options) *Store {
	prefix := opts.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(prefix, "{}") {
		panic("redisstore: a Redis key prefix must not contain braces")
	}
	margin := opts.ExpiryMargin
	if margin == 0 {
		margin = DefaultExpiryMargin
	}
	return &Store{
		client:  client,
		base:    prefix,
		prefix:  prefix + redisHashTag + ":",
		sharded: opts.Sharded,
		margin:  margin,
		create:  redis.NewScript(redisCreateScript),
		put:     redis.NewScript(redisPutScript),
		del:     redis.NewScript(redisDeleteScript),
		prune:   redis.NewScript(redisPruneScript),
	}
}

// redisExpireFunc is the start of every script that sets expiries: at is
// Unix milliseconds, or "" for no expiry. An expiry in the past deletes the
// key at once, so scripts set expiries after their other writes.
const redisExpireFunc = `
local function expire(key, at)
  if at == '' then redis.call('PERSIST', key) else redis.call('PEXPIREAT', key, at) end
end
`

// redisCreateScript creates a session unless it exists, and maps its slot
// unless the slot is mapped. The session's own slot is not listed in the
// upload's slot set (its record names it).
//
// KEYS: session, sweep index, the upload's slot set, [slot mapping].
// ARGV: record, version, sweep entry ("" none), sweep score, expiry, upload
// ID, "1" to create nothing when the slot is mapped to another upload, "1"
// to store no mapping (the session has the slot's own ID: auth.Session.OwnSlot).
// Returns {1} when created (also when this very call was applied already and
// is being retried after a lost reply), {2, the other upload's ID} when the
// slot was mapped to it (and ARGV[7] asked), else {0, stored record}.
const redisCreateScript = redisExpireFunc + `
if KEYS[4] and ARGV[7] == '1' then
  local to = redis.call('GET', KEYS[4])
  if to and to ~= ARGV[6] then return {2, to} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  local cur = redis.call('HMGET', KEYS[1], 'd', 'v')
  if cur[2] == ARGV[2] then return {1} end
  return {0, cur[1]}
end
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'v', ARGV[2], 'w', ARGV[3])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3]) end
if KEYS[4] and ARGV[8] ~= '1' and redis.call('SET', KEYS[4], ARGV[6], 'NX') then
  expire(KEYS[4], ARGV[5])
end
expire(KEYS[1], ARGV[5])
return {1}
`

// redisMoveSweep is the part of the put scripts that stores the session
// (KEYS[1]) and moves its entry in the sweep index (KEYS[2]), with ARGV: read
// version, new version, record, sweep entry ("" none), sweep score.
const redisMoveSweep = `
local function move_sweep()
  local old = redis.call('HGET', KEYS[1], 'w')
  if old ~= ARGV[4] then
    if old and old ~= '' then redis.call('ZREM', KEYS[2], old) end
    if ARGV[4] ~= '' then redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4]) end
  end
  redis.call('HSET', KEYS[1], 'd', ARGV[3], 'v', ARGV[2], 'w', ARGV[4])
end
`

// redisPutScript stores a session read at version ARGV[1], unless it changed
// since, and (for a rebind) maps a slot to it, unless the slot is mapped to
// another upload.
//
// KEYS: session, sweep index, the upload's slot set, the n slot keys that
// were mapped to the upload when it was read, then for a rebind the slot key
// to map.
// ARGV: read version, new version, record, sweep entry ("" none), sweep score,
// expiry, upload ID, n, the upload the slot was mapped to when read ("" none,
// or the upload itself), the key of the slot the new record names ("" none).
// Returns 1 when stored (or when this very call was applied already), 0 when
// the session or the slot changed since they were read, -1 when the session is
// gone, -2 (nothing changed) when the slot is mapped to another upload.
//
// Every change to the upload's slot set that adds a slot also changes the
// version, so the n slots cover all of them; one that is no longer mapped to
// the upload (its key expired, and another upload may have mapped it since)
// is skipped. The set lists every slot mapped to the upload but the one its
// record names: a slot that the record stops naming (a re-bind) joins it.
const redisPutScript = redisExpireFunc + redisMoveSweep + `
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if v == ARGV[2] then return 1 end
local n = tonumber(ARGV[8])
local slot = KEYS[4 + n]
local prev = ''
if slot then
  prev = redis.call('GET', slot) or ''
  if prev ~= '' and prev ~= ARGV[7] then return -2 end
end
if v ~= ARGV[1] then return 0 end
if prev ~= ARGV[9] then return 0 end
move_sweep()
if slot then
  if prev == '' then
    redis.call('SET', slot, ARGV[7])
    if slot ~= ARGV[10] then redis.call('SADD', KEYS[3], slot) end
  end
  expire(slot, ARGV[6])
end
for i = 4, 3 + n do
  if redis.call('GET', KEYS[i]) == ARGV[7] then
    expire(KEYS[i], ARGV[6])
    if KEYS[i] ~= ARGV[10] then redis.call('SADD', KEYS[3], KEYS[i]) end
  end
end
expire(KEYS[3], ARGV[6])
expire(KEYS[1], ARGV[6])
return 1
`

// redisDeleteScript deletes a session read at version ARGV[1] ("" for a
// missing one), its slot mappings and its sweep index entry, unless the
// session changed since it was read.
//
// KEYS: session, sweep index, the upload's slot set, the slot keys that were
// mapped to the upload when it was read.
// ARGV: read version, upload ID.
// Returns 1 when done, 0 when the session changed since it was read.
const redisDeleteScript = `
local v = redis.call('HGET', KEYS[1], 'v') or ''
if v ~= ARGV[1] then return 0 end
for i = 4, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[2] then redis.call('DEL', KEYS[i]) end
end
local w = redis.call('HGET', KEYS[1], 'w')
if w and w ~= '' then redis.call('ZREM', KEYS[2], w) end
redis.call('DEL', KEYS[1], KEYS[3])
return 1
`

// redisPruneScript removes a sweep index entry unless it is the entry of its
// session (left behind by a session that Redis expired).
//
// KEYS: session, sweep index. ARGV: the entry.
const redisPruneScript = `
if redis.call('HGET', KEYS[1], 'w') ~= ARGV[1] then redis.call('ZREM', KEYS[2], ARGV[1]) end
return 1
`

// errRedisStoreClosed is returned by every method of a closed Store.
var errRedisStoreClosed = fmt.Errorf("redis session store is closed: %w", auth.ErrStoreUnavailable)

func (r *Store) keySession(uploadID string) string {
	if r.sharded {
		return r.shardSession(uploadID)
	}
	return r.prefix + "session:" + uploadID
}
func (r *Store) keySlot(slotKey string) string {
	if r.sharded {
		return r.shardSlot(slotKey)
	}
	return r.prefix + "slot:" + slotKey
}

// keySweepOf is the sweep index that lists the session of uploadID.
func (r *Store) keySweepOf(uploadID string) string {
	if r.sharded {
		return r.shardSweepOf(uploadID)
	}
	return r.keySweep()
}

func (r *Store) keySlots(uploadID string) string { return r.prefix + "slots:" + uploadID }
func (r *Store) keySweep() string                { return r.prefix + "sweep" }

// begin fails if ctx is done or the store is closed.
func (r *Store) begin(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if r.closed.Load() {
		return fmt.Errorf("%s: %w", op, errRedisStoreClosed)
	}
	return nil
}

// unavailable wraps an error of the Redis client.
func unavailable(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, auth.ErrStoreUnavailable, err)
}

// Create implements auth.Store.
func (r *Store) Create(ctx context.Context, s auth.Session) (auth.Session, bool, error) {
	stored, created, _, err := r.createAt(ctx, s, false)
	return stored, created, err
}

// CreateAtSlot implements auth.SlotCreator: one round trip, as Create.
func (r *Store) CreateAtSlot(ctx context.Context, s auth.Session) (auth.Session, bool, string, error) {
	return r.createAt(ctx, s, true)
}

// createAt is Create, and CreateAtSlot when atSlot.
func (r *Store) createAt(ctx context.Context, s auth.Session, atSlot bool) (auth.Session, bool, string, error) {
	const op = "create session"
	if err := record.CheckNew(s); err != nil {
		return auth.Session{}, false, "", err
	}
	if err := r.begin(ctx, op); err != nil {
		return auth.Session{}, false, "", err
	}
	if r.sharded {
		return r.shardedCreate(ctx, op, s, atSlot && record.MapsSlot(s))
	}
	rec, stored, err := encode(s)
	if err != nil {
		return auth.Session{}, false, "", fmt.Errorf("%s: %w", op, err)
	}
	keys := []string{r.keySession(s.UploadID), r.keySweep(), r.keySlots(s.UploadID)}
	if record.MapsSlot(s) {
		keys = append(keys, r.keySlot(s.SlotKey))
	}
	entry, score := redisSweepEntry(stored)
	check, own := "", ""
	if atSlot {
		check = "1"
	}
	if s.OwnSlot {
		own = "1"
	}
	res, err := r.create.Run(ctx, r.client, keys,
		rec, newRedisVersion(), entry, score, r.expireAt(stored), s.UploadID, check, own).Slice()
	if err != nil {
		return auth.Session{}, false, "", unavailable(op, err)
	}
	if len(res) == 1 && res[0] == int64(1) {
		return stored, true, "", nil
	}
	if len(res) == 2 {
		if v, ok := res[1].(string); ok {
			switch res[0] {
			case int64(2):
				return auth.Session{}, false, v, nil
			case int64(0):
				old, err := record.Decode(s.UploadID, []byte(v))
				if err != nil {
					return auth.Session{}, false, "", fmt.Errorf("%s: %w", op, err)
				}
				return old, false, "", nil
			}
		}
	}
	return auth.Session{}, false, "", fmt.Errorf("%s: unexpected script result of %d values", op, len(res))
}

// Get implements auth.Store.
func (r *Store) Get(ctx context.Context, uploadID string) (auth.Session, error) {
	const op = "get session"
	if err := r.begin(ctx, op); err != nil {
		return auth.Session{}, err
	}
	v, err := r.client.HGet(ctx, r.keySession(uploadID), "d").Result()
	return sessionReply(op, uploadID, v, err)
}

// sessionReply decodes the record field of uploadID's session hash as Redis
// answered it: redis.Nil is auth.ErrSessionNotFound, any other error the
// server's unavailability.
func sessionReply(op, uploadID, v string, err error) (auth.Session, error) {
	if errors.Is(err, redis.Nil) {
		return auth.Session{}, fmt.Errorf("%s: %w", op, auth.ErrSessionNotFound)
	}
	if err != nil {
		return auth.Session{}, unavailable(op, err)
	}
	s, err := record.Decode(uploadID, []byte(v))
	if err != nil {
		return auth.Session{}, fmt.Errorf("%s: %w", op, err)
	}
	return s, nil
}

// LookupSlot implements auth.Store.
func (r *Store) LookupSlot(ctx context.Context, slotKey string) (string, error) {
	const op = "look up slot"
	if err := r.begin(ctx, op); err != nil {
		return "", err
	}
	id, err := r.client.Get(ctx, r.keySlot(slotKey)).Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("%s: %w", op, auth.ErrSessionNotFound)
	}
	if err != nil {
		return "", unavailable(op, err)
	}
	return id, nil
}

// ResolveSlot implements auth.SlotResolver: the slot's mapping and the
// record of its own upload in one round trip (a second one only for a slot
// re-bound to another upload).
func (r *Store) ResolveSlot(ctx context.Context, slotKey, ownID string) (auth.Session, error) {
	const op = "resolve slot"
	if err := r.begin(ctx, op); err != nil {
		return auth.Session{}, err
	}
	p := r.client.Pipeline()
	mapped := p.Get(ctx, r.keySlot(slotKey))
	own := p.HGet(ctx, r.keySession(ownID), "d")
	_, _ = p.Exec(ctx) // the errors are in the commands
	id, err := mapped.Result()
	switch {
	case errors.Is(err, redis.Nil):
		id = ownID
	case err != nil:
		return auth.Session{}, unavailable(op, err)
	}
	if id != ownID {
		return r.Get(ctx, id)
	}
	s, err := sessionReply(op, ownID, own.Val(), own.Err())
	if err != nil {
		return auth.Session{}, err
	}
	if s.Kind != auth.KindWhole {
		return auth.Session{}, fmt.Errorf("%s: the slot's own upload ID names a partial upload: %w", op, auth.ErrSessionNotFound)
	}
	return s, nil
}

// Update implements auth.Store.
func (r *Store) Update(ctx context.Context, uploadID string, fn func(*auth.Session) error) (auth.Session, error) {
	return r.modify(ctx, "update session", uploadID, "", fn)
}

// Rebind implements auth.Store.
func (r *Store) Rebind(ctx context.Context, uploadID, slotKey string, fn func(*auth.Session) error) (auth.Session, error) {
	if slotKey == "" {
		return auth.Session{}, errors.New("rebind session: empty slot key")
	}
	return r.modify(ctx, "rebind session", uploadID, slotKey, fn)
}

// redisSnapshot is what a write read before it commits.
type redisSnapshot struct {
	found   bool
	record  string
	version string   // "" when not found
	slots   []string // names of the slot keys that may be mapped to the upload
	mapped  string   // the upload the slot to re-bind is mapped to ("" none)
}

// read reads the state that a write of uploadID depends on; slotKey is the
// slot to re-bind ("" for none).
func (r *Store) read(ctx context.Context, uploadID, slotKey string) (redisSnapshot, error) {
	pipe := r.client.Pipeline()
	fields := pipe.HMGet(ctx, r.keySession(uploadID), "d", "v")
	slots := pipe.SMembers(ctx, r.keySlots(uploadID))
	var mapped *redis.StringCmd
	if slotKey != "" {
		mapped = pipe.Get(ctx, r.keySlot(slotKey))
	}
	_, _ = pipe.Exec(ctx) // the errors are in the commands
	var snap redisSnapshot
	vals, err := fields.Result()
	if err != nil {
		return snap, err
	}
	if snap.slots, err = slots.Result(); err != nil {
		return snap, err
	}
	if mapped != nil {
		snap.mapped, err = mapped.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return snap, err
		}
	}
	if len(vals) != 2 {
		return snap, fmt.Errorf("HMGET returned %d values", len(vals))
	}
	rec, okRec := vals[0].(string)
	ver, okVer := vals[1].(string)
	if okRec && okVer {
		snap.found, snap.record, snap.version = true, rec, ver
		// The slot the record names is not in the set (since this release;
		// earlier ones listed it there too).
		// A record that does not decode fails the write that reads it (modify
		// decodes it again), not the read.
		if s, err := record.Decode(uploadID, []byte(rec)); err == nil && s.SlotKey != "" {
			if own := r.keySlot(s.SlotKey); !slices.Contains(snap.slots, own) {
				snap.slots = append(snap.slots, own)
			}
		}
	}
	return snap, nil
}

// modify is Update (slotKey "") and Rebind: read, apply fn, commit unless the
// session (or the slot's mapping) changed meanwhile; else again.
func (r *Store) modify(ctx context.Context, op, uploadID, slotKey string, fn func(*auth.Session) error) (auth.Session, error) {
	if err := r.begin(ctx, op); err != nil {
		return auth.Session{}, err
	}
	if r.sharded {
		return r.shardedModify(ctx, op, uploadID, slotKey, fn)
	}
	for attempt := range redisMaxWriteAttempts {
		if err := redisBackoff(ctx, attempt); err != nil {
			return auth.Session{}, fmt.Errorf("%s: %w", op, err)
		}
		snap, err := r.read(ctx, uploadID, slotKey)
		if err != nil {
			return auth.Session{}, unavailable(op, err)
		}
		if !snap.found {
			return auth.Session{}, fmt.Errorf("%s: %w", op, auth.ErrSessionNotFound)
		}
		if slotKey != "" && snap.mapped != "" && snap.mapped != uploadID {
			return auth.Session{}, fmt.Errorf("%s: %w", op, auth.ErrSlotTaken)
		}
		s, err := record.Decode(uploadID, []byte(snap.record))
		if err != nil {
			return auth.Session{}, fmt.Errorf("%s: %w", op, err)
		}
		if err := fn(&s); err != nil {
			return auth.Session{}, fmt.Errorf("%s: %w", op, err)
		}
		if s.UploadID != uploadID {
			return auth.Session{}, fmt.Errorf("%s: %w", op, record.ErrUploadIDChanged)
		}
		rec, stored, err := encode(s)
		if err != nil {
			return auth.Session{}, fmt.Errorf("%s: %w", op, err)
		}
		keys := make([]string, 0, 4+len(snap.slots))
		keys = append(keys, r.keySession(uploadID), r.keySweep(), r.keySlots(uploadID))
		keys = append(keys, snap.slots...)
		if slotKey != "" {
			keys = append(keys, r.keySlot(slotKey))
		}
		entry, score := redisSweepEntry(stored)
		own := ""
		if stored.SlotKey != "" {
			own = r.keySlot(stored.SlotKey)
		}
		res, err := r.put.Run(ctx, r.client, keys,
			snap.version, newRedisVersion(), rec, entry, score, r.expireAt(stored),
			uploadID, len(snap.slots), snap.mapped, own).Int64()
		if err != nil {
			return auth.Session{}, unavailable(op, err)
		}
		switch res {
		case 1:
			return stored, nil
		case -1:
			return auth.Session{}, fmt.Errorf("%s: %w", op, auth.ErrSessionNotFound)
		case -2: // mapped to another upload since it was read
			return auth.Session{}, fmt.Errorf("%s: %w", op, auth.ErrSlotTaken)
		}
		// 0: changed since read; again.
	}
	return auth.Session{}, fmt.Errorf("%s: %w: %d conflicting writes in a row", op, auth.ErrStoreUnavailable, redisMaxWriteAttempts)
}

// Delete implements auth.Store.
func (r *Store) Delete(ctx context.Context, uploadID string) error {
	const op = "delete session"
	if err := r.begin(ctx, op); err != nil {
		return err
	}
	if r.sharded {
		return r.shardedDelete(ctx, op, uploadID)
	}
	for attempt := range redisMaxWriteAttempts {
		if err := redisBackoff(ctx, attempt); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		snap, err := r.read(ctx, uploadID, "")
		if err != nil {
			return unavailable(op, err)
		}
		keys := make([]string, 0, 3+len(snap.slots))
		keys = append(keys, r.keySession(uploadID), r.keySweep(), r.keySlots(uploadID))
		keys = append(keys, snap.slots...)
		res, err := r.del.Run(ctx, r.client, keys, snap.version, uploadID).Int64()
		if err != nil {
			return unavailable(op, err)
		}
		if res == 1 {
			return nil
		}
	}
	return fmt.Errorf("%s: %w: %d conflicting writes in a row", op, auth.ErrStoreUnavailable, redisMaxWriteAttempts)
}

// Expired implements auth.Store. It reads only the due part of the sweep index.
func (r *Store) Expired(ctx context.Context, t time.Time, limit int) ([]auth.Session, error) {
	const op = "list expired sessions"
	if err := r.begin(ctx, op); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	var due []auth.Session
	for range redisExpiredRounds {
		var pruned bool
		var err error
		due, pruned, err = r.expired(ctx, t, limit)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		if !pruned {
			break
		}
	}
	return due, nil
}

// expired is one round of Expired; pruned reports that it removed stale index
// entries, so that another round may find more due sessions.
func (r *Store) expired(ctx context.Context, t time.Time, limit int) (due []auth.Session, pruned bool, err error) {
	var entries []string
	if r.sharded {
		entries, err = r.shardedDue(ctx, t, limit)
	} else {
		entries, err = r.client.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key:     r.keySweep(),
			Start:   "-inf",
			Stop:    strconv.FormatInt(redisSweepMillis(t), 10), // the millisecond of t: some entries are not before t
			ByScore: true,
			Count:   int64(limit),
		}).Result()
	}
	if err != nil {
		return nil, false, unavailable("read sweep index", err)
	}
	before := redisSweepPrefix(t)
	n := 0
	for _, e := range entries {
		if len(e) <= redisSweepPrefixLen || e[:redisSweepPrefixLen] >= before {
			break // this one and all that follow are not before t
		}
		n++
	}
	if n == 0 {
		return nil, false, nil
	}
	entries = entries[:n]
	ids := make([]string, n)
	pipe := r.client.Pipeline()
	cmds := make([]*redis.SliceCmd, n)
	for i, e := range entries {
		ids[i] = e[redisSweepPrefixLen:]
		cmds[i] = pipe.HMGet(ctx, r.keySession(ids[i]), "d", "w")
	}
	_, _ = pipe.Exec(ctx) // the errors are in the commands
	for i, cmd := range cmds {
		vals, err := cmd.Result()
		if err != nil {
			return nil, false, unavailable("read due sessions", err)
		}
		entry := entries[i]
		rec, okRec := vals[0].(string)
		if w, _ := vals[1].(string); !okRec || w != entry {
			// The session expired in Redis, or moved since the index was read.
			keys := []string{r.keySession(ids[i]), r.keySweepOf(ids[i])}
			if err := r.prune.Run(ctx, r.client, keys, entry).Err(); err != nil {
				return nil, false, unavailable("prune sweep index", err)
			}
			pruned = true
			continue
		}
		s, err := record.Decode(ids[i], []byte(rec))
		if err != nil {
			return nil, false, err
		}
		due = append(due, s)
	}
	return due, pruned, nil
}

// Ping implements auth.Store.
func (r *Store) Ping(ctx context.Context) error {
	const op = "ping session store"
	if err := r.begin(ctx, op); err != nil {
		return err
	}
	if err := r.ping(ctx); err != nil {
		return unavailable(op, err)
	}
	return nil
}

// ping pings Redis: every master of a Cluster (each holds sessions), one
// server otherwise.
func (r *Store) ping(ctx context.Context) error {
	if c, ok := r.client.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return m.Ping(ctx).Err()
		})
	}
	return r.client.Ping(ctx).Err()
}

// Close implements auth.Store. It closes nothing: the Redis client belongs to the
// caller, who may share it (with the upload locker, say) and closes it after
// the store. Every later call of the store fails with auth.ErrStoreUnavailable.
func (r *Store) Close() error {
	r.closed.Store(true)
	return nil
}

// expireAt is the key expiry of a session, as a PEXPIREAT argument ("" none).
func (r *Store) expireAt(s auth.Session) string {
	if s.SweepAt.IsZero() || r.margin < 0 {
		return ""
	}
	// Both terms are below 2^53 (see record.SweepNanos): no overflow.
	at := redisSweepMillis(s.SweepAt) + r.margin.Milliseconds()
	return strconv.FormatInt(max(at, 1), 10) // PEXPIREAT wants a positive time; 1 is long past
}

// redisBackoff waits before the attempt-th try of a write (not before the first).
func redisBackoff(ctx context.Context, attempt int) error {
	if attempt == 0 {
		return nil
	}
	ceiling := min(redisBackoffMax, redisBackoffBase<<min(attempt, 16))
	timer := time.NewTimer(mrand.N(ceiling) + time.Microsecond)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// newRedisVersion returns a fresh, unique session version.
func newRedisVersion() string { return rand.Text() }

// redisSweepPrefixLen is the length of the time part of a sweep index entry.
const redisSweepPrefixLen = 16

// redisSweepPrefix is the time part of a sweep index entry: Unix nanoseconds
// with the sign bit flipped, as 16 lower-case hex digits.
func redisSweepPrefix(t time.Time) string {
	return fmt.Sprintf("%016x", record.SweepOrder(t))
}

// redisSweepMillis is t in Unix milliseconds (rounded down), clamped like record.SweepNanos.
func redisSweepMillis(t time.Time) int64 {
	ns := record.SweepNanos(t)
	ms := ns / int64(time.Millisecond)
	if ns%int64(time.Millisecond) < 0 {
		ms--
	}
	return ms
}

// redisSweepEntry returns the sweep index entry and score of s ("" if it has no SweepAt).
func redisSweepEntry(s auth.Session) (entry, score string) {
	if s.SweepAt.IsZero() {
		return "", "0"
	}
	return redisSweepPrefix(s.SweepAt) + s.UploadID, strconv.FormatInt(redisSweepMillis(s.SweepAt), 10)
}

// encode returns the record of s and s as it reads back from it.
func encode(s auth.Session) (string, auth.Session, error) {
	v, err := record.Encode(s)
	if err != nil {
		return "", auth.Session{}, err
	}
	stored, err := record.Decode(s.UploadID, v)
	if err != nil {
		return "", auth.Session{}, err
	}
	return string(v), stored, nil
}

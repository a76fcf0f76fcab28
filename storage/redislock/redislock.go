// Package redislock is a tusd handler.Locker on Redis, for several gateway
// instances that serve the same uploads.
//
// # Locks
//
// A lock is the key <prefix><upload ID>, taken with SET key token NX PX lease,
// where token is random for every acquisition. While a lock is held, its
// holder renews the lease every RenewInterval with a compare-and-pexpire
// script. Unlock is a compare-and-delete script that also publishes a
// "released" notice, so only the owner of a lock ever deletes its key.
//
// # Release requests
//
// tusd asks the holder of an upload's lock to give it up (requestRelease)
// when another request wants the lock, which is how a HEAD cuts a PATCH whose
// client has gone. An acquirer that finds the key held publishes a release
// request for the ID; the instance that holds the lock receives it and calls
// the holder's requestRelease. Each Locker has one pub/sub connection for all
// its locks, subscribed to two channels (<prefix>release-request and
// <prefix>released, the payload being the upload ID) and confirmed before New
// returns. Pub/sub delivers at most once, so nothing relies on it alone: the
// acquirer also retries SET NX every PollInterval and re-publishes its request
// every RepublishInterval until it has the lock or its context ends. A lost
// message costs latency, never a lock. Every instance receives every notice
// (the payload is an upload ID), so the pub/sub traffic is one small message
// per Unlock and per contended attempt, times the number of instances.
//
// # Redis Cluster
//
// A lock key has no hash tag: Cluster hashes its whole name, so the locks of
// different uploads spread over the masters, and every command and script
// touches one key. The notices are plain PUBLISH (from the unlock script,
// on the master that holds the key); Cluster forwards those to every node,
// so a subscription on any node receives them. (Sharded pub/sub would reach
// only the shard of the channel, whose master is then needed by every
// publisher.) While the node of the subscription is down, the subscriber
// resubscribes with backoff and polling carries the hand-offs.
//
// # Losing a lock, and the residual risk
//
// When a renewal finds the key gone or owned by someone else, the lock is
// lost: the holder's requestRelease is called (tusd then stops the request)
// and its Unlock returns ErrLockLost without touching the key. When a
// renewal fails with an error (Redis unreachable), requestRelease is called
// too, and renewals go on as long as the lock is held, so that the key
// survives the holder's graceful completion if Redis comes back.
//
// A holder that is paused for longer than its remaining lease (a stopped VM,
// a long GC pause, a partition between it and Redis) can still be writing
// after its key expired and another instance took the lock. The stores
// (tusd's filestore and s3store) take no fencing token, so such a late write
// is not rejected by the store. Keep the lease well above the longest pause
// one expects and above tusd's GracefulRequestCompletionTimeout. Redis's own
// durability bounds the guarantee as well: a key lost in a failover to a
// replica that had not received it, or in a restart that replays an AOF
// missing its last second, frees the lock early; the holder learns it at
// its next renewal (and is asked to release), not before.
package redislock

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tus/tusd/v2/pkg/handler"
)

// Defaults for Options.
const (
	DefaultKeyPrefix         = "uploadgate:lock:"
	DefaultLease             = 10 * time.Second
	DefaultPollInterval      = 200 * time.Millisecond
	DefaultRepublishInterval = time.Second
	DefaultOpTimeout         = 5 * time.Second
)

// Options configure a Locker. Zero values take the defaults.
type Options struct {
	// KeyPrefix is put in front of an upload ID to form the lock's key; the
	// pub/sub channels are KeyPrefix+"release-request" and
	// KeyPrefix+"released". Default "uploadgate:lock:".
	KeyPrefix string
	// Lease is how long a lock outlives its holder's last renewal.
	// Default 10 s.
	Lease time.Duration
	// RenewInterval is how often a holder renews its lease. It must be
	// shorter than Lease. Default Lease/3.
	RenewInterval time.Duration
	// PollInterval is how often an acquirer retries SET NX while it waits,
	// whatever pub/sub says. Default 200 ms.
	PollInterval time.Duration
	// RepublishInterval is how often an acquirer publishes its release
	// request again while it waits. Default 1 s.
	RepublishInterval time.Duration
	// OpTimeout bounds the Redis calls that have no caller's context: the
	// subscription in New and Unlock. Default 5 s.
	OpTimeout time.Duration
	// Logger receives renewal failures, lost locks and subscriber
	// reconnections. Default: discard.
	Logger *slog.Logger

	// dropMessage, when set, is asked for every pub/sub message received;
	// true drops it (tests simulate lost messages with it).
	dropMessage func(channel, payload string) bool
}

// ErrUnavailable is wrapped, with the Redis error as well, by the error that
// Lock returns when Redis fails while acquiring: tusd answers it with 503 and
// Retry-After (the cause stays out of the response).
var ErrUnavailable = handler.Error{
	ErrorCode: "ERR_LOCK_UNAVAILABLE",
	Message:   "the upload's lock cannot be taken at the moment; retry later",
	HTTPResponse: handler.HTTPResponse{
		StatusCode: http.StatusServiceUnavailable,
		Body:       "ERR_LOCK_UNAVAILABLE: the upload's lock cannot be taken at the moment; retry later\n",
		Header:     handler.HTTPHeader{"Content-Type": "text/plain; charset=utf-8", "Retry-After": "5"},
	},
}

// ErrLockLost is wrapped by Unlock's error when the lock had expired or was
// taken by someone else before Unlock; the key was left alone.
var ErrLockLost = errors.New("redislock: lock was lost before unlock")

// ErrNotLocked is wrapped by Unlock's error when the lock is not held by this
// Lock object.
var ErrNotLocked = errors.New("redislock: lock is not held")

// ErrClosed is wrapped by Lock's error after the Locker was closed.
var ErrClosed = errors.New("redislock: locker is closed")

// renewScript extends the lease if the key still holds the token.
var renewScript = redis.NewScript(`
if redis.call("get", KEYS[1]) == ARGV[1] then
	return redis.call("pexpire", KEYS[1], ARGV[2])
end
return 0
`)

// unlockScript deletes the key if it still holds the token and publishes
// the released notice (ARGV[3] on channel ARGV[2]).
var unlockScript = redis.NewScript(`
if redis.call("get", KEYS[1]) == ARGV[1] then
	redis.call("del", KEYS[1])
	redis.call("publish", ARGV[2], ARGV[3])
	return 1
end
return 0
`)

// Locker hands out locks on Redis. It is safe for concurrent use.
type Locker struct {
	client    redis.UniversalClient
	opts      Options
	log       *slog.Logger
	requestCh string
	releaseCh string

	// ctx ends when the Locker is closed; it stops the subscriber and every
	// renewal.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// subscriptions counts confirmed subscriptions (1 after New).
	subscriptions atomic.Int64

	mu      sync.Mutex
	closed  bool
	pubsub  *redis.PubSub                  // the current subscription
	entries map[string]map[*entry]struct{} // local waiters and holders by upload ID
}

// entry is one Lock call on this instance, from its first attempt until
// Unlock (or until it gives up). The subscriber signals it without blocking.
type entry struct {
	requested chan struct{} // someone asked for the lock
	released  chan struct{} // the lock was released somewhere
}

// New returns a Locker on client. It subscribes to the release channels and
// waits until Redis confirmed the subscription, so it fails when Redis
// cannot be reached. The client stays the caller's: Close does not close it.
func New(client redis.UniversalClient, opts Options) (*Locker, error) {
	if client == nil {
		return nil, errors.New("redislock: nil client")
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = DefaultKeyPrefix
	}
	if opts.Lease == 0 {
		opts.Lease = DefaultLease
	}
	if opts.RenewInterval == 0 {
		opts.RenewInterval = opts.Lease / 3
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.RepublishInterval == 0 {
		opts.RepublishInterval = DefaultRepublishInterval
	}
	if opts.OpTimeout == 0 {
		opts.OpTimeout = DefaultOpTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case opts.Lease < time.Millisecond:
		return nil, fmt.Errorf("redislock: lease %v is shorter than a millisecond", opts.Lease)
	case opts.RenewInterval <= 0 || opts.RenewInterval >= opts.Lease:
		return nil, fmt.Errorf("redislock: renew interval %v must be positive and shorter than the lease %v", opts.RenewInterval, opts.Lease)
	case opts.PollInterval < 0 || opts.RepublishInterval < 0 || opts.OpTimeout < 0:
		return nil, errors.New("redislock: negative interval or timeout")
	}

	ctx, cancel := context.WithCancel(context.Background())
	l := &Locker{
		client:    client,
		opts:      opts,
		log:       opts.Logger,
		requestCh: opts.KeyPrefix + "release-request",
		releaseCh: opts.KeyPrefix + "released",
		ctx:       ctx,
		cancel:    cancel,
		entries:   make(map[string]map[*entry]struct{}),
	}
	sctx, scancel := context.WithTimeout(ctx, opts.OpTimeout)
	ps, err := l.subscribe(sctx)
	scancel()
	if err != nil {
		cancel()
		return nil, err
	}
	l.wg.Add(1)
	go l.receive(ps)
	return l, nil
}

// Close stops the subscriber and the renewals, and waits for them. Locks
// still held are asked to be released (their requestRelease is called) but
// their keys are not deleted by Close: their Unlock deletes them if the
// client still works, or they expire within a lease. Lock fails with
// ErrClosed afterwards. Close does not close the client.
func (l *Locker) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	ps := l.pubsub
	l.pubsub = nil
	l.mu.Unlock()

	l.cancel()
	var err error
	if ps != nil {
		// Closing the connection ends a receive that is blocked on it.
		if cerr := ps.Close(); cerr != nil && !errors.Is(cerr, redis.ErrClosed) {
			err = fmt.Errorf("redislock: close subscription: %w", cerr)
		}
	}
	l.wg.Wait()
	return err
}

// NewLock returns an unlocked lock for the upload id.
func (l *Locker) NewLock(id string) (handler.Lock, error) {
	if id == "" {
		return nil, errors.New("redislock: empty upload ID")
	}
	return &lock{l: l, id: id, key: l.opts.KeyPrefix + id}, nil
}

// register adds an entry for id, so that messages for id reach it.
func (l *Locker) register(id string) (*entry, error) {
	e := &entry{requested: make(chan struct{}, 1), released: make(chan struct{}, 1)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	set := l.entries[id]
	if set == nil {
		set = make(map[*entry]struct{})
		l.entries[id] = set
	}
	set[e] = struct{}{}
	return e, nil
}

func (l *Locker) unregister(id string, e *entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	set := l.entries[id]
	delete(set, e)
	if len(set) == 0 {
		delete(l.entries, id)
	}
}

// signal wakes the local entries for id: a release request (holders act on
// it) or a released notice (waiters act on it).
func (l *Locker) signal(id string, request bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for e := range l.entries[id] {
		ch := e.released
		if request {
			ch = e.requested
		}
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// unavailable wraps a Redis error met while acquiring.
func unavailable(id string, err error) error {
	return fmt.Errorf("redislock: lock %s: %w: %w", id, ErrUnavailable, err)
}

// lock is a handler.Lock. One lock object can be locked again after Unlock.
type lock struct {
	l   *Locker
	id  string
	key string

	mu   sync.Mutex
	held *holding
}

// holding is one acquisition: its token and its renewal goroutine.
type holding struct {
	token          string
	entry          *entry
	requestRelease func()
	cancel         context.CancelFunc
	unlocked       chan struct{} // closed by Unlock before it cancels
}

// Lock takes the lock, waiting until it is free or ctx ends. While it waits
// it asks the holder, on whichever instance, to release the lock. It returns
// handler.ErrLockTimeout when ctx ends first, and an error wrapping
// ErrUnavailable and the cause when Redis fails.
func (k *lock) Lock(ctx context.Context, requestRelease func()) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.held != nil {
		return fmt.Errorf("redislock: lock %s is already held by this lock object", k.id)
	}
	l := k.l
	e, err := l.register(k.id)
	if err != nil {
		return fmt.Errorf("redislock: lock %s: %w", k.id, err)
	}
	acquired := false
	defer func() {
		if !acquired {
			l.unregister(k.id, e)
		}
	}()

	var lastPublish time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		// Requests that arrived before this attempt were meant for an
		// earlier holder; those from now on are for us if we win.
		select {
		case <-e.requested:
		default:
		}
		token := rand.Text()
		ok, err := l.client.SetNX(ctx, k.key, token, l.opts.Lease).Result()
		if err != nil {
			// The SET may have been applied before the reply was lost,
			// unless it never left for want of a connection.
			if !isDialError(err) {
				l.deleteIfOwned(ctx, k.key, token)
			}
			if ctx.Err() != nil {
				return handler.ErrLockTimeout
			}
			return unavailable(k.id, err)
		}
		if ok {
			if err := k.startHolding(token, e, requestRelease); err != nil {
				l.deleteIfOwned(ctx, k.key, token)
				return err
			}
			acquired = true
			return nil
		}

		// Held: ask the holder to release it, directly if it is here and
		// through pub/sub wherever it is; again now and then, as a request
		// can be lost.
		if lastPublish.IsZero() || time.Since(lastPublish) >= l.opts.RepublishInterval {
			l.signal(k.id, true)
			if err := l.client.Publish(ctx, l.requestCh, k.id).Err(); err != nil {
				if ctx.Err() != nil {
					return handler.ErrLockTimeout
				}
				return unavailable(k.id, err)
			}
			lastPublish = time.Now()
		}

		// ±10 % so that waiters on one ID do not retry in step.
		timer.Reset(l.opts.PollInterval * time.Duration(90+mrand.IntN(21)) / 100)
		select {
		case <-ctx.Done():
			return handler.ErrLockTimeout
		case <-l.ctx.Done():
			return fmt.Errorf("redislock: lock %s: %w", k.id, ErrClosed)
		case <-e.released:
		case <-timer.C:
		}
	}
}

// startHolding starts the renewals of a lock just acquired.
func (k *lock) startHolding(token string, e *entry, requestRelease func()) error {
	l := k.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("redislock: lock %s: %w", k.id, ErrClosed)
	}
	hctx, cancel := context.WithCancel(l.ctx)
	h := &holding{
		token:          token,
		entry:          e,
		requestRelease: requestRelease,
		cancel:         cancel,
		unlocked:       make(chan struct{}),
	}
	k.held = h
	l.wg.Add(1)
	go k.hold(hctx, h)
	return nil
}

// hold renews the lease while the lock is held and passes release requests
// on to the holder. It ends at Unlock, at Close, or when the lock is lost.
func (k *lock) hold(ctx context.Context, h *holding) {
	l := k.l
	defer l.wg.Done()
	ask := func() {
		select {
		case <-h.unlocked:
		default:
			h.requestRelease()
		}
	}
	ticker := time.NewTicker(l.opts.RenewInterval)
	defer ticker.Stop()
	leaseMs := l.opts.Lease.Milliseconds()
	for {
		select {
		case <-ctx.Done():
			select {
			case <-h.unlocked:
			default:
				// Closed with the lock held: no more renewals, so stop.
				l.log.Warn("redislock: locker closed while a lock is held; asking for its release", "id", k.id)
				h.requestRelease()
			}
			return
		case <-h.entry.requested:
			ask()
		case <-ticker.C:
			rctx, cancel := context.WithTimeout(ctx, l.opts.RenewInterval)
			n, err := renewScript.Run(rctx, l.client, []string{k.key}, h.token, leaseMs).Int()
			cancel()
			if ctx.Err() != nil {
				continue // Unlock or Close; handled above
			}
			if err != nil {
				l.log.Warn("redislock: renewing a lock failed; asking for its release", "id", k.id, "error", err)
				ask()
				continue
			}
			if n == 0 {
				l.log.Warn("redislock: lock lost (expired or taken); asking for its release", "id", k.id)
				ask()
				return
			}
		}
	}
}

// Unlock releases the lock if this lock object still owns it, and tells
// waiters on every instance. If the lock was lost meanwhile, the key is left
// alone and the error wraps ErrLockLost.
func (k *lock) Unlock() error {
	k.mu.Lock()
	h := k.held
	k.held = nil
	k.mu.Unlock()
	if h == nil {
		return fmt.Errorf("redislock: unlock %s: %w", k.id, ErrNotLocked)
	}
	l := k.l
	close(h.unlocked)
	h.cancel()
	l.unregister(k.id, h.entry)
	defer l.signal(k.id, false)

	ctx, cancel := context.WithTimeout(context.Background(), l.opts.OpTimeout)
	defer cancel()
	n, err := unlockScript.Run(ctx, l.client, []string{k.key}, h.token, l.releaseCh, k.id).Int()
	if err != nil {
		return fmt.Errorf("redislock: unlock %s: %w", k.id, err)
	}
	if n == 0 {
		return fmt.Errorf("redislock: unlock %s: %w", k.id, ErrLockLost)
	}
	return nil
}

// isDialError reports whether err is a failure to connect, before any
// command was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// deleteIfOwned deletes key if it holds token, after an acquisition whose
// outcome is unknown or that is given up. Errors are logged: the key expires
// within a lease anyway.
func (l *Locker) deleteIfOwned(ctx context.Context, key, token string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.OpTimeout)
	defer cancel()
	id := key[len(l.opts.KeyPrefix):]
	if err := unlockScript.Run(ctx, l.client, []string{key}, token, l.releaseCh, id).Err(); err != nil {
		l.log.Warn("redislock: could not clean up after a failed acquisition; the key expires with its lease", "id", id, "error", err)
	}
}

// Held reports whether any instance holds the lock of the upload id. The
// storage package asks it before a read-only request (a HEAD) takes a lock
// that it needs only to hand over.
func (l *Locker) Held(ctx context.Context, id string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, l.opts.OpTimeout)
	defer cancel()
	n, err := l.client.Exists(ctx, l.opts.KeyPrefix+id).Result()
	if err != nil {
		return false, unavailable(id, err)
	}
	return n > 0, nil
}

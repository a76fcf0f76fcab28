package gateway

import (
	"sync"
	"time"
)

// failureLimiter counts failed slot verifications per client address, so that
// nobody can grind signatures: after burst failures an address is refused
// (429) until its bucket refills at rate per minute. Requests that a live
// upload session authorises are never counted or refused.
type failureLimiter struct {
	mu      sync.Mutex
	burst   float64
	perSec  float64
	now     func() time.Time
	buckets map[string]*bucket
	max     int
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newFailureLimiter(perMinute int, now func() time.Time) *failureLimiter {
	return &failureLimiter{
		burst:   float64(perMinute),
		perSec:  float64(perMinute) / 60,
		now:     now,
		buckets: map[string]*bucket{},
		max:     100000,
	}
}

// refill brings an address's bucket up to date; the caller holds mu.
func (l *failureLimiter) refill(addr string) *bucket {
	now := l.now()
	b, ok := l.buckets[addr]
	if !ok {
		if len(l.buckets) >= l.max {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[addr] = b
		return b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.perSec)
	b.last = now
	return b
}

// prune drops buckets that have refilled; the caller holds mu.
func (l *failureLimiter) prune(now time.Time) {
	for a, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.perSec >= l.burst {
			delete(l.buckets, a)
		}
	}
}

// Blocked reports whether addr has used up its failures, and how long until
// the next one is allowed.
func (l *failureLimiter) Blocked(addr string) (bool, time.Duration) {
	if l == nil || l.burst <= 0 {
		return false, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(addr)
	if b.tokens >= 1 {
		return false, 0
	}
	wait := time.Duration((1 - b.tokens) / l.perSec * float64(time.Second))
	return true, wait
}

// Fail records a failed verification from addr.
func (l *failureLimiter) Fail(addr string) {
	if l == nil || l.burst <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(addr)
	b.tokens = max(0, b.tokens-1)
}

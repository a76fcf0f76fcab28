package gateway

import (
	"testing"
	"time"
)

func TestFailureLimiter(t *testing.T) {
	clock := &testClock{t: time.Unix(1795000000, 0)}
	l := newFailureLimiter(10, clock.Now)
	for i := range 10 {
		if blocked, _ := l.Blocked("198.51.100.7"); blocked {
			t.Fatalf("blocked after %d failures", i)
		}
		l.Fail("198.51.100.7")
	}
	blocked, wait := l.Blocked("198.51.100.7")
	if !blocked || wait <= 0 || wait > 6*time.Second {
		t.Fatalf("after 10 failures: blocked %v, wait %s", blocked, wait)
	}
	if b, _ := l.Blocked("198.51.100.8"); b {
		t.Fatal("another address is blocked")
	}
	clock.Advance(wait)
	if b, _ := l.Blocked("198.51.100.7"); b {
		t.Fatal("still blocked after the announced wait")
	}
	l.Fail("198.51.100.7")
	if b, _ := l.Blocked("198.51.100.7"); !b {
		t.Fatal("one refilled failure must be the only one allowed")
	}
	clock.Advance(time.Minute)
	if b, _ := l.Blocked("198.51.100.7"); b {
		t.Fatal("a minute later the bucket is full again")
	}
}

func TestFailureLimiterPrunes(t *testing.T) {
	clock := &testClock{t: time.Unix(1795000000, 0)}
	l := newFailureLimiter(10, clock.Now)
	l.max = 3
	for _, a := range []string{"a", "b", "c"} {
		l.Fail(a)
	}
	clock.Advance(time.Minute)
	l.Fail("d")
	if len(l.buckets) != 1 {
		t.Fatalf("%d buckets after pruning, want 1", len(l.buckets))
	}
}

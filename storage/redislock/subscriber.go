package redislock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// healthInterval is how long the subscriber waits for a message before it
// pings; a ping that gets no answer within another interval makes it
// subscribe again on a new connection.
const healthInterval = 10 * time.Second

// resubscribeBackoff bounds the wait between attempts to subscribe again.
const (
	minResubscribeBackoff = 100 * time.Millisecond
	maxResubscribeBackoff = 5 * time.Second
)

// subscribe subscribes to both channels and returns once Redis confirmed
// both subscriptions, so that no message published afterwards is missed.
func (l *Locker) subscribe(ctx context.Context) (*redis.PubSub, error) {
	ps := l.client.Subscribe(ctx, l.requestCh, l.releaseCh)
	// Close must be able to close it while it waits for the confirmation.
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		ps.Close()
		return nil, ErrClosed
	}
	l.pubsub = ps
	l.mu.Unlock()
	want := map[string]bool{l.requestCh: true, l.releaseCh: true}
	for len(want) > 0 {
		timeout := l.opts.OpTimeout
		if d, ok := ctx.Deadline(); ok {
			timeout = time.Until(d)
		}
		if timeout <= 0 {
			ps.Close()
			return nil, fmt.Errorf("redislock: subscribe: %w", context.DeadlineExceeded)
		}
		msg, err := ps.ReceiveTimeout(ctx, timeout)
		if err != nil {
			ps.Close()
			return nil, fmt.Errorf("redislock: subscribe: %w", err)
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				delete(want, m.Channel)
			}
		case *redis.Message:
			// A message on a channel confirmed already; keep it.
			l.route(m)
		}
	}
	l.subscriptions.Add(1)
	return ps, nil
}

// receive routes messages to local holders and waiters until the Locker is
// closed. When the connection fails or stays silent, it subscribes again
// (with confirmation); messages published in between are lost, which the
// acquirers' polling makes up for.
func (l *Locker) receive(ps *redis.PubSub) {
	defer l.wg.Done()
	backoff := minResubscribeBackoff
	for {
		err := l.consume(ps)
		ps.Close()
		if l.ctx.Err() != nil {
			return
		}
		l.log.Warn("redislock: subscription lost; subscribing again", "error", err)
		for {
			sctx, cancel := context.WithTimeout(l.ctx, l.opts.OpTimeout)
			ps, err = l.subscribe(sctx)
			cancel()
			if err == nil {
				break
			}
			if l.ctx.Err() != nil {
				return
			}
			l.log.Warn("redislock: subscribing failed", "error", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-l.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, maxResubscribeBackoff)
		}
		backoff = minResubscribeBackoff
		l.log.Info("redislock: subscribed again")
	}
}

// consume reads from ps until it fails, stays silent past a ping, or the
// Locker is closed (Close closes ps, which ends the read).
func (l *Locker) consume(ps *redis.PubSub) error {
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(l.ctx, healthInterval)
		if l.ctx.Err() != nil {
			return l.ctx.Err()
		}
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return fmt.Errorf("receive: %w", err)
			}
			if pinged {
				return errors.New("no answer to a ping")
			}
			pctx, cancel := context.WithTimeout(l.ctx, l.opts.OpTimeout)
			err := ps.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			pinged = true
			continue
		}
		pinged = false
		if m, ok := msg.(*redis.Message); ok {
			l.route(m)
		}
	}
}

// route passes a message to the local entries of its upload ID.
func (l *Locker) route(m *redis.Message) {
	if l.opts.dropMessage != nil && l.opts.dropMessage(m.Channel, m.Payload) {
		return
	}
	switch m.Channel {
	case l.requestCh:
		l.signal(m.Payload, true)
	case l.releaseCh:
		l.signal(m.Payload, false)
	}
}

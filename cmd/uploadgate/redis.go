package main

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// newRedisClient connects to Redis as --redis-url says:
//
//	redis://[user:password@]host:port[/db]              one server (rediss:// for TLS)
//	redis://host:port?master_name=M&addr=host2:port     Sentinel: the master named M
//	redis+cluster://host:port?addr=host2:port           Cluster (rediss+cluster:// for TLS)
//
// Query parameters are go-redis's (dial_timeout, read_timeout, pool_size…).
// Without them, calls time out after a few seconds so that an outage is
// answered 503 promptly instead of hanging requests.
func newRedisClient(raw string) (redis.UniversalClient, error) {
	connect, err := parseRedisURL(raw)
	if err != nil {
		return nil, err
	}
	return connect(), nil
}

// parseRedisURL checks a --redis-url and returns the constructor of its
// client, without connecting or making a client: validate calls it alone.
func parseRedisURL(raw string) (func() redis.UniversalClient, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	switch {
	case strings.HasSuffix(u.Scheme, "+cluster"):
		u.Scheme = strings.TrimSuffix(u.Scheme, "+cluster")
		o, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, err
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = orDefault(q, "dial_timeout", o.DialTimeout), orDefault(q, "read_timeout", o.ReadTimeout), orDefault(q, "write_timeout", o.WriteTimeout)
		return func() redis.UniversalClient { return redis.NewClusterClient(o) }, nil
	case q.Has("master_name"):
		o, err := redis.ParseFailoverURL(raw)
		if err != nil {
			return nil, err
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = orDefault(q, "dial_timeout", o.DialTimeout), orDefault(q, "read_timeout", o.ReadTimeout), orDefault(q, "write_timeout", o.WriteTimeout)
		return func() redis.UniversalClient { return redis.NewFailoverClient(o) }, nil
	case u.Scheme == "redis" || u.Scheme == "rediss" || u.Scheme == "unix":
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, err
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = orDefault(q, "dial_timeout", o.DialTimeout), orDefault(q, "read_timeout", o.ReadTimeout), orDefault(q, "write_timeout", o.WriteTimeout)
		if !q.Has("max_retries") {
			o.MaxRetries = 1
		}
		return func() redis.UniversalClient { return redis.NewClient(o) }, nil
	default:
		return nil, fmt.Errorf("unknown scheme %q: want redis, rediss, redis+cluster or rediss+cluster", u.Scheme)
	}
}

// orDefault keeps a timeout the URL set, else uses 2 s.
func orDefault(q url.Values, name string, set time.Duration) time.Duration {
	if q.Has(name) {
		return set
	}
	return 2 * time.Second
}

package gateway

import (
	"time"

	"github.com/uploadgate/uploadgate/storage"
)

// Config defaults, applied by New to the fields left zero.
const (
	// DefaultUploadBase is the path the XMPP server signs slots for.
	DefaultUploadBase = "/upload/"
	// DefaultTusBase is the path of tus upload URLs.
	DefaultTusBase = "/files/"
	// DefaultNetworkTimeout bounds each read of a request body.
	DefaultNetworkTimeout = 60 * time.Second
	// DefaultLockTimeout is how long a request waits for an upload's lock
	// before 423: the storage's own default, so that a creation waits as
	// long as any other request.
	DefaultLockTimeout = storage.DefaultLockTimeout
	// DefaultFailedChecksPerMinute is how many failed slot verifications a
	// client address may make per minute before it gets 429.
	DefaultFailedChecksPerMinute = 10
)

// Package storage builds the tusd store composer and locker that the gateway
// runs on, from configuration: the filestore on local disk (the default) or
// tusd's s3store on any S3-compatible server; the in-process memory locker or
// a Redis locker shared by several instances.
//
// It also closes the gaps of tusd v2.10.1 as a library that concern storage:
// a lock that cannot be had in time is answered 423 (retried by clients)
// instead of 500, and creating an upload whose ID exists already fails instead
// of truncating the stored bytes.
//
// storage knows nothing about slots, sessions or XMPP.
package storage

// Package auth decides who may write an upload.
//
// It owns three things:
//
//   - slot signatures: parsing and verifying the upload slots that XMPP servers
//     sign (mod_http_upload_external v1 and v2, Metronome's token, the expiring
//     v3 form and Prosody mod_http_file_share's JWT), with several secrets for
//     rotation and constant-time comparison;
//   - upload IDs: the keyed derivation of an upload's ID from its slot path, so
//     that retries and restarts converge on one upload while the public GET URL
//     reveals nothing about the write URL;
//   - upload sessions: the long-lived, server-side authorisation that a slot is
//     bound to at its first valid use, the policy of their lifetimes
//     (Policy, Sessions), and the Store interface that keeps them.
//
// It also reads and creates the key files of slot secrets and of the upload
// ID key.
//
// The stores live in packages of their own, so that auth depends on no
// database: auth/pebblestore (a Pebble database in a directory, the
// single-node default; auth/boltstore is the bbolt file of earlier releases,
// which it imports), auth/redisstore (Redis, shared by several instances) and auth/memstore (in
// memory, for tests). auth/sessiontest is the contract suite that every one of
// them passes.
//
// auth must not import the gateway package and does not speak HTTP beyond the
// plain values (path, query, header strings) that the gateway hands it.
package auth

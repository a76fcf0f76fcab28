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
//     bound to at its first valid use, and the Store interface with its
//     embedded (bbolt), in-memory and Redis implementations.
//
// auth must not import the gateway package and does not speak HTTP beyond the
// plain values (path, query, header strings) that the gateway hands it.
package auth

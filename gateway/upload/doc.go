// Package upload is the door-neutral part of the upload core: the request
// body under the upload rules, and the one adapter through which every door
// (XEP-0363 PUT, tus, the IETF resumable-upload draft) calls tusd.
//
// The doors in package gateway resolve a request's slot, session and upload
// once, apply the rule table below, and call tusd through Handlers.Do, which
// returns a typed Outcome (status, offset, Kind). A door turns the outcome
// into its own protocol's answer; nothing else reads tusd's answers.
//
// # The rule table
//
// Every request obeys these rules, whatever its door (docs/security.md says
// why, and what each refusal looks like):
//
//  1. A complete upload is immutable: no append, re-bind, concatenation or
//     replacement; the same bytes again are the idempotent 201.
//  2. Every byte stored under a slot is bounded by its signed size: Body
//     hands on at most the bytes a request may store, and holds back the byte
//     that would complete an upload until the body is known to end there
//     (ErrBodyTooLong otherwise, which tusd answers with 413). Deferred
//     lengths and partial uploads are bounded by the slot's size too.
//  3. A re-bind moves an incomplete upload to a fresh slot that signs the same
//     file and has no upload of its own; the old slot's URLs answer 410.
//  4. One upload, one body: a full PUT that differs from the stored bytes
//     starts a new upload under a new ID.
//  5. A signature that verifies is never refused by the failure limiter;
//     every signature check counts its failures.
//  6. Every request is answered or closed within bounded time: Body moves the
//     read deadline before every read, and a refused request with an unread
//     body is answered at once and its connection closed.
//  7. Demo slots are minted only for the machine itself.
//  8. A header that tusd also parses is accepted only in the form tusd reads
//     the same way.
package upload

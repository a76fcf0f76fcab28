// Package gateway speaks HTTP: it routes the XEP-0363 door (PUT, HEAD and GET
// under the upload base), the tus door (creation at a slot URL, HEAD, PATCH
// and DELETE under the tus base), the IETF resumable-upload draft (interop
// versions 3 to 8, at both) and the operational endpoints, and answers every
// refusal with the status code clients act on.
//
// Each door is a protocol adapter over the upload core: a request's slot,
// session and stored upload are resolved once (resolve.go), the rule table
// of package upload (and docs/security.md) decides what the request may do,
// tusd is called through the one adapter (upload.Handlers.Do), and the door
// turns the typed outcome into its protocol's answer.
//
// Offsets, locks and body reading belong to tusd; slot and session decisions
// belong to package auth; bytes belong to package storage. The gateway parses,
// asks, calls tusd and answers.
package gateway

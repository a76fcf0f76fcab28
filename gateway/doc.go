// Package gateway speaks HTTP: it routes the XEP-0363 door (PUT, HEAD and GET
// under the upload base), the tus door (creation at a slot URL, HEAD, PATCH
// and DELETE under the tus base) and the operational endpoints, checks slots
// and sessions in front of tusd, and answers every refusal with the status
// code clients act on.
//
// Offsets, locks and body reading belong to tusd; slot and session decisions
// belong to package auth; bytes belong to package storage. The gateway parses,
// asks, calls tusd and answers.
package gateway

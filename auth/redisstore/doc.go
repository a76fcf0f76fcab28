// Package redisstore keeps upload sessions in Redis, for several gateway
// instances that share them: the auth.Store that owns the key layout, the Lua
// scripts that write atomically, the key expiries and the sweep index in
// sorted sets.
//
// # Two key layouts
//
// The single-node layout (the default, for one server or Sentinel) keeps
// every key in the hash slot of "{sessions}" and makes every operation one
// script; Store's documentation describes it. The sharded layout
// (Options.Sharded, which the gateway selects for redis+cluster:// URLs)
// spreads the keys over the masters of a Redis Cluster. The two layouts do
// not read each other's keys.
//
// # The sharded layout
//
// Redis Cluster runs a script or a MULTI only on keys of one hash slot, and
// keys of one hash slot live on one master. The single-node layout puts every
// key in one hash slot ("{sessions}"); the sharded layout spreads them:
//
//	P{<bucket tag>}:session:<upload ID>  hash: d = record, v = version, w = sweep
//	                                     index entry, and one field "m:<slot key>"
//	                                     per slot that a Rebind mapped to the upload
//	P{<bucket tag>}:sweep                the bucket's sweep index (sorted set)
//	P slot:<slot key>                    string: the upload ID the slot is mapped to
//	                                     (none for a slot's own upload, created
//	                                     with auth.Session.OwnSlot)
//
// where P is the key prefix. An upload belongs to one of shardedBuckets
// buckets (FNV-1a of its upload ID); each bucket has a hash tag of its own,
// chosen so that the buckets' hash slots are evenly spaced over the 16384, so
// the buckets spread evenly over masters that own ranges of hash slots. A
// session, its slot list and its bucket's sweep index share the bucket's hash
// slot, so every change of a session is one script, as in the single-node
// layout. The slot mappings carry no hash tag: each is hashed on its whole
// name and lands on any master. The upload's set of slot keys of the
// single-node layout is gone: the slots that can be mapped to an upload are
// the record's SlotKey and the "m:" fields.
//
// Only the slot mappings cross hash slots, and no operation makes them
// atomic with the session. SET NX is the only write that maps a slot, so no
// operation ever takes a slot from another upload, and the list of an
// upload's slots is a superset (every removal and expiry change of a mapping
// is a compare-and-set on the upload ID it names). The writes are ordered so
// that a crash or a race leaves at worst a mapping that names the right
// upload without being listed with it, or a listed slot whose mapping is
// gone; the first expires with the session (and a Create of the same upload
// finds it), the second heals at the next Create of the upload:
//
//   - Create sends, in one pipeline (one round trip, to two masters in
//     parallel), SET slot upload NX PXAT expiry (the claim) and the create
//     script of the session. When the session existed already and the claim
//     took the slot, the claim is withdrawn (deleted if it still names the
//     upload) unless the slot is one of the existing session's, which
//     restores a mapping that was lost; so a Create that finds its session
//     maps nothing new. A claim whose script failed (Redis down) is withdrawn
//     as well, at best effort: one that stays names the right upload and
//     expires with the session's expiry.
//   - CreateAtSlot (auth.SlotCreator: the gateway opens a whole upload's
//     session with it) also reads the slot's mapping in that pipeline, just
//     before the claim. When the mapping names another upload (the slot was
//     re-bound to it) and the claim failed, the session that the script may
//     have created is deleted again, under the version check of the script
//     that wrote it, and the other upload is returned; the window in which
//     that session exists is one round trip, and nobody knows its upload URL.
//     The single-node layout checks the slot inside its create script.
//   - Rebind reads the session and the slot's mapping, claims the slot with
//     SET NX if it is free (a taken slot fails the call with ErrSlotTaken
//     before anything is written, a lost race reads again), then commits the
//     session with its new "m:" field under the version check. If the commit
//     finds the session gone, or fn fails on a later attempt, the claim made
//     by this call is withdrawn. Rebind never overwrites a mapping: SET NX is
//     the only write that maps a slot.
//   - Delete withdraws every mapping that names the upload (a compare and
//     delete per listed slot) in the same pipeline as the session's delete
//     script, and repeats both while the session changed meanwhile.
//   - Update (and Rebind) move the expiry of the listed mappings with the
//     session's, in the pipeline of the commit, each only if it still names
//     the upload. When two writes race, the loser's expiry may land last; it
//     differs from the session's by the time between the two writes, while
//     both expire ExpiryMargin after the session's SweepAt.
//
// One race is left: a call that withdraws its claim (a Create that finds its
// upload existing with another slot, which the gateway never asks since a
// whole upload's ID is derived from its slot; a Rebind whose function fails
// on a retry) may do so after a concurrent Rebind of the same upload to the
// same slot saw the claim and listed the slot, which then stays listed but
// unmapped until the next Rebind to it.
//
// The sweep index is read bucket by bucket (one pipeline, one request per
// master) and merged in SweepAt order, ties by upload ID.
package redisstore

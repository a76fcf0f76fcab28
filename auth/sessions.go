package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Policy sets the lifetimes of upload sessions.
type Policy struct {
	// IdleTTL is how long a session lives after its last accepted request (sliding).
	IdleTTL time.Duration
	// MaxTTL caps a session's life since it was opened (or last re-bound).
	MaxTTL time.Duration
	// Retention is how long the partial data of an incomplete upload is kept
	// after its session's deadline, so that a rebind can still continue it.
	Retention time.Duration
	// FileRetention is how long a complete file is kept when its slot gave no
	// expiry; zero (or negative) keeps it forever.
	FileRetention time.Duration
	// History is how long the record of a complete upload whose file is kept
	// for ever (no slot expiry, no FileRetention) is kept after its
	// completion, and never less than until its session ends: then the
	// clean-up forgets it (the file stays, see Session.KeepFile). Zero (or
	// negative) keeps such records for ever. A re-bound upload keeps its
	// record: its slots lead to it only through their mappings.
	History time.Duration
	// TouchInterval throttles the writes of sliding deadlines: at most one per
	// session per interval. Address changes and state changes are always written.
	TouchInterval time.Duration
	// MaxRebinds is how often an upload may be re-bound to a fresh slot; a
	// negative value allows none.
	MaxRebinds int
	// MaxAge bounds the total age of an upload across rebinds: no rebind, and no
	// deadline, later than this after the upload was first created.
	MaxAge time.Duration
	// IDKey, when set, is the key that upload IDs are derived with
	// (DeriveUploadID). A slot then leads to its own upload, the one whose ID
	// it derives, without a stored mapping (see Session.OwnSlot): the store
	// keeps one key fewer per upload. Only the slots that uploads were
	// re-bound to are mapped. Without it every slot is mapped.
	IDKey []byte
}

// Policy defaults.
const (
	DefaultIdleTTL       = 24 * time.Hour
	DefaultMaxTTL        = 72 * time.Hour
	DefaultRetention     = 7 * 24 * time.Hour
	DefaultTouchInterval = time.Minute
	DefaultMaxRebinds    = 3
	DefaultMaxAge        = 14 * 24 * time.Hour
)

// DefaultPolicy returns the default lifetimes: 24 h idle, 72 h in all, partial
// data kept 7 days past the deadline, complete files kept forever, deadlines
// written at most once a minute, 3 rebinds within 14 days.
func DefaultPolicy() Policy {
	return Policy{
		IdleTTL:       DefaultIdleTTL,
		MaxTTL:        DefaultMaxTTL,
		Retention:     DefaultRetention,
		TouchInterval: DefaultTouchInterval,
		MaxRebinds:    DefaultMaxRebinds,
		MaxAge:        DefaultMaxAge,
	}
}

// withDefaults replaces zero or negative durations (except FileRetention) and
// a zero MaxRebinds by their defaults, and caps TouchInterval at IdleTTL/4.
func (p Policy) withDefaults() Policy {
	d := DefaultPolicy()
	for _, f := range []struct{ v, def *time.Duration }{
		{&p.IdleTTL, &d.IdleTTL},
		{&p.MaxTTL, &d.MaxTTL},
		{&p.Retention, &d.Retention},
		{&p.TouchInterval, &d.TouchInterval},
		{&p.MaxAge, &d.MaxAge},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	// A session that lives only minutes must still slide while data flows:
	// write its deadline at least four times per idle period.
	if p.TouchInterval > p.IdleTTL/4 {
		p.TouchInterval = max(p.IdleTTL/4, time.Millisecond)
	}
	switch {
	case p.MaxRebinds == 0:
		p.MaxRebinds = d.MaxRebinds
	case p.MaxRebinds < 0:
		p.MaxRebinds = 0
	}
	if p.FileRetention < 0 {
		p.FileRetention = 0
	}
	if p.History < 0 {
		p.History = 0
	}
	return p
}

// Session manager errors.
var (
	// ErrSessionExpired: the session exists but no longer authorises requests
	// (or, for a rebind, its upload's retention has ended).
	ErrSessionExpired = errors.New("upload session expired")
	// ErrRebindLimit: the upload was re-bound too often or is too old to be re-bound.
	ErrRebindLimit = errors.New("upload cannot be re-bound again")
	// ErrRebindMismatch: the fresh slot is not for the same file as the upload
	// (another file name, size or type, or, between JWT slots, another
	// uploader), or the upload is not one that a slot re-binds.
	ErrRebindMismatch = errors.New("slot does not match the upload")
	// ErrUploadComplete: the upload is complete; it takes no more data.
	ErrUploadComplete = errors.New("upload is already complete")
)

// errNoWrite aborts a store update that turned out to change nothing.
var errNoWrite = errors.New("nothing to write")

// Sessions applies the session policy on top of a Store: it opens sessions
// when a slot is first used, authorises requests, slides deadlines, records
// completion and re-binds uploads to fresh slots. Sessions never see a slot
// signature again after Open, so rotating slot secrets does not affect them.
//
// A Sessions is safe for concurrent use.
type Sessions struct {
	store Store
	p     Policy
	now   func() time.Time
	reads readCache
}

// NewSessions returns a manager of the sessions in store under policy p (zero
// fields take their defaults; see Policy). now is the clock (time.Now if nil).
func NewSessions(store Store, p Policy, now func() time.Time) *Sessions {
	if now == nil {
		now = time.Now
	}
	return &Sessions{store: store, p: p.withDefaults(), now: now, reads: readCache{m: make(map[string]readEntry)}}
}

// Policy returns the policy in force, defaults filled in.
func (m *Sessions) Policy() Policy { return m.p }

// Open binds a verified slot to an upload at its first valid use: it creates
// the session of uploadID unless one exists (create-if-absent on the upload ID
// and, for the whole upload, on the slot key).
//
// A concurrent or repeated Open for the same upload returns the existing
// session with created=false and changes nothing; the caller checks Live. When
// the slot of a KindWhole Open has been re-bound to an earlier upload, Open
// returns that upload's session (created=false): the caller must use the
// returned session's UploadID, not the one it passed.
func (m *Sessions) Open(ctx context.Context, slot Slot, uploadID string, kind Kind, addr string) (Session, bool, error) {
	id := uploadID
	switch {
	case !ValidUploadID(id):
		return Session{}, false, errors.New("open session: invalid upload id")
	case kind != KindWhole && kind != KindPartial:
		return Session{}, false, fmt.Errorf("open session: unknown upload kind %q", kind)
	case slot.Path == "":
		return Session{}, false, errors.New("open session: slot without path")
	}
	now := m.now()
	key := SlotKey(slot.Path)
	sc, oneStep := m.store.(SlotCreator)
	oneStep = oneStep && kind == KindWhole

	if kind == KindWhole && !oneStep {
		s, found, err := m.reboundTo(ctx, key, id)
		if err != nil {
			return Session{}, false, fmt.Errorf("open upload session: %w", err)
		}
		if found {
			return s, false, nil
		}
	}

	abs := minTime(now.Add(m.p.MaxTTL), now.Add(m.p.MaxAge))
	s := Session{
		UploadID:      id,
		SlotKey:       key,
		SlotPath:      slot.Path,
		Kind:          kind,
		Protocol:      slot.Protocol,
		Subject:       slot.Subject,
		SignatureHash: slot.SignatureHash,
		Size:          slot.Size,
		Type:          slot.Type,
		Created:       now,
		LastSeen:      now,
		IdleDeadline:  minTime(now.Add(m.p.IdleTTL), abs),
		AbsDeadline:   abs,
		FileExpires:   slot.FileExpires,
		FirstCreated:  now,
		LastAddr:      addr,
	}
	s.SweepAt = m.incompleteSweepAt(s)
	s.OwnSlot = kind == KindWhole && m.p.IDKey != nil && id == DeriveUploadID(m.p.IDKey, slot.Path)
	defer m.reads.drop(s.UploadID)
	if oneStep {
		// The slot check and the creation in one call (one round trip to a
		// remote store) when the slot is not re-bound, the usual case.
		stored, created, other, err := sc.CreateAtSlot(ctx, s)
		if err != nil {
			return Session{}, false, fmt.Errorf("open upload session: %w", err)
		}
		if other == "" {
			return stored, created, nil
		}
		rs, found, err := m.wholeSession(ctx, other)
		if err != nil {
			return Session{}, false, fmt.Errorf("open upload session: %w", err)
		}
		if found {
			return rs, false, nil
		}
		// The upload the slot was re-bound to is gone: create as below.
	}
	stored, created, err := m.store.Create(ctx, s)
	if err != nil {
		return Session{}, false, fmt.Errorf("open upload session: %w", err)
	}
	return stored, created, nil
}

// reboundTo returns the session of the whole upload that slotKey was re-bound
// to, if it is another upload than id.
func (m *Sessions) reboundTo(ctx context.Context, slotKey, id string) (Session, bool, error) {
	mapped, err := m.store.LookupSlot(ctx, slotKey)
	if errors.Is(err, ErrSessionNotFound) || err == nil && mapped == id {
		return Session{}, false, nil
	}
	if err != nil {
		return Session{}, false, err
	}
	return m.wholeSession(ctx, mapped)
}

// wholeSession returns the session of upload id, and whether it exists and
// is a whole upload's.
func (m *Sessions) wholeSession(ctx context.Context, id string) (Session, bool, error) {
	s, err := m.store.Get(ctx, id)
	if errors.Is(err, ErrSessionNotFound) { // deleted meanwhile
		return Session{}, false, nil
	}
	if err != nil {
		return Session{}, false, err
	}
	return s, s.Kind == KindWhole, nil
}

// Authorize returns the session of uploadID if it is live. Otherwise it fails
// with ErrSessionNotFound, or returns the session with ErrSessionExpired.
func (m *Sessions) Authorize(ctx context.Context, uploadID string) (Session, error) {
	s, err := m.store.Get(ctx, uploadID)
	if err != nil {
		return Session{}, fmt.Errorf("authorize upload: %w", err)
	}
	if !s.Live(m.now()) {
		return s, fmt.Errorf("authorize upload: %w", ErrSessionExpired)
	}
	return s, nil
}

// readTTL is how long AuthorizeRead may answer from its cache.
const readTTL = time.Second

// AuthorizeRead is Authorize for requests that only read an upload (HEAD).
// It may answer from a cache of this process that is at most readTTL old,
// and only with a session that stays live for at least readTTL more: a
// session that another instance changed meanwhile is at worst seen a moment
// late, never seen as expired too early. (A session ended meanwhile by
// completion or deletion lets the read through to the storage, which
// answers for the upload as it is.) A poller of one upload then costs a
// shared session store one read per second per instance instead of one per
// request.
func (m *Sessions) AuthorizeRead(ctx context.Context, uploadID string) (Session, error) {
	id := uploadID
	now := m.now()
	s, ok, gen := m.reads.get(id, now)
	if ok && s.Live(now.Add(readTTL)) {
		return s, nil
	}
	s, err := m.Authorize(ctx, id)
	if err == nil {
		m.reads.put(s, now, gen)
	}
	return s, err
}

// readCache holds sessions read by AuthorizeRead, each with when it was read.
// gen counts this process's writes, so that a read that raced with one does
// not put the session as it was before the write back.
type readCache struct {
	mu  sync.Mutex
	gen uint64
	m   map[string]readEntry
}

type readEntry struct {
	s  Session
	at time.Time
}

// readCacheSize bounds the cache; beyond it, an arbitrary entry makes room.
const readCacheSize = 4096

func (c *readCache) get(id string, now time.Time) (Session, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || now.Sub(e.at) >= readTTL || now.Before(e.at) {
		return Session{}, false, c.gen
	}
	return e.s, true, c.gen
}

// put caches s, read at now, unless this process wrote a session since gen.
func (c *readCache) put(s Session, now time.Time, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if _, ok := c.m[s.UploadID]; !ok && len(c.m) >= readCacheSize {
		for k, e := range c.m {
			if now.Sub(e.at) >= readTTL {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < readCacheSize/2 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[s.UploadID] = readEntry{s: s, at: now}
}

// drop forgets id: this process changed its session.
func (c *readCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, id)
}

// AuthorizeSlot is Authorize for the upload a slot path is mapped to (the
// whole upload opened with it, or the one it was re-bound to).
func (m *Sessions) AuthorizeSlot(ctx context.Context, slotPath string) (Session, error) {
	var s Session
	var err error
	if m.p.IDKey == nil {
		var id string
		if id, err = m.store.LookupSlot(ctx, SlotKey(slotPath)); err == nil {
			s, err = m.store.Get(ctx, id)
		}
	} else {
		s, err = resolveSlot(ctx, m.store, SlotKey(slotPath), DeriveUploadID(m.p.IDKey, slotPath))
	}
	if err != nil {
		return Session{}, fmt.Errorf("authorize slot upload: %w", err)
	}
	if !s.Live(m.now()) {
		return s, fmt.Errorf("authorize slot upload: %w", ErrSessionExpired)
	}
	return s, nil
}

// SlotResolver is a Store that reads what a slot leads to in one step (one
// round trip to a remote store), where a lookup of its mapping and then a
// read of a session take two. Sessions.AuthorizeSlot uses it when the store
// has it and the policy has an IDKey.
type SlotResolver interface {
	// ResolveSlot returns the session of the upload that slotKey is mapped to
	// (re-bound to), else that of ownID (the slot's own upload ID) if it is a
	// whole upload's, else ErrSessionNotFound.
	ResolveSlot(ctx context.Context, slotKey, ownID string) (Session, error)
}

// resolveSlot is SlotResolver.ResolveSlot on any store: with the store's
// own when it has one, else with LookupSlot and Get.
func resolveSlot(ctx context.Context, store Store, slotKey, ownID string) (Session, error) {
	if r, ok := store.(SlotResolver); ok {
		return r.ResolveSlot(ctx, slotKey, ownID)
	}
	return lookupSlotSession(ctx, store, slotKey, ownID)
}

// lookupSlotSession is ResolveSlot with the Store's LookupSlot and Get.
func lookupSlotSession(ctx context.Context, store Store, slotKey, ownID string) (Session, error) {
	id, err := store.LookupSlot(ctx, slotKey)
	switch {
	case errors.Is(err, ErrSessionNotFound):
		id = ownID
	case err != nil:
		return Session{}, err
	}
	s, err := store.Get(ctx, id)
	if err != nil {
		return Session{}, err
	}
	if id == ownID && s.Kind != KindWhole {
		return Session{}, fmt.Errorf("the slot's own upload ID names a partial upload: %w", ErrSessionNotFound)
	}
	return s, nil
}

// Touch records a request that the session authorised and that succeeded: it
// slides IdleDeadline to now+IdleTTL (never past AbsDeadline), sets LastSeen,
// and counts a change of client address (addr != LastAddr; "" is no address).
// It writes only when TouchInterval has passed since the stored LastSeen or
// the address changed (s, as Authorize returned it, lets a throttled touch
// skip the store entirely), and returns the session as it now stands and
// whether the address changed. It never resurrects an expired session: then it
// writes nothing and returns the stored session with ErrSessionExpired.
// Call it only after the request succeeded, with a context that outlives the
// client's connection (the write must land even if the client hung up).
func (m *Sessions) Touch(ctx context.Context, s Session, addr string) (Session, bool, error) {
	now := m.now()
	if s.Live(now) && !addrChanged(s, addr) && !m.touchDue(s, now) {
		return s, false, nil // throttled: nothing to read or write
	}
	var (
		cur     Session
		changed bool
		expired bool
	)
	defer m.reads.drop(s.UploadID)
	out, err := m.store.Update(ctx, s.UploadID, func(p *Session) error {
		cur, changed, expired = *p, false, false
		if !p.Live(now) {
			expired = true
			return errNoWrite
		}
		changed = addrChanged(*p, addr)
		if !changed && !m.touchDue(*p, now) {
			return errNoWrite
		}
		if now.After(p.LastSeen) {
			p.LastSeen = now
		}
		if idle := minTime(now.Add(m.p.IdleTTL), p.AbsDeadline); idle.After(p.IdleDeadline) {
			p.IdleDeadline = idle
		}
		if changed {
			p.LastAddr = addr
			p.Addrs++
		}
		if !p.Complete {
			p.SweepAt = m.incompleteSweepAt(*p)
		}
		return nil
	})
	switch {
	case errors.Is(err, errNoWrite) && expired:
		return cur, false, fmt.Errorf("touch upload session: %w", ErrSessionExpired)
	case errors.Is(err, errNoWrite):
		return cur, false, nil
	case err != nil:
		return Session{}, false, fmt.Errorf("touch upload session: %w", err)
	}
	return out, changed, nil
}

// DeadlineAfterTouch is the deadline the session will have once a request
// that succeeds now has touched it: slid if the touch is due, else as stored
// (Touch writes at most once per TouchInterval).
func (m *Sessions) DeadlineAfterTouch(s Session) time.Time {
	now := m.now()
	if m.touchDue(s, now) && s.Live(now) {
		return minTime(now.Add(m.p.IdleTTL), s.AbsDeadline)
	}
	return s.Deadline()
}

func (m *Sessions) touchDue(s Session, now time.Time) bool {
	return now.Sub(s.LastSeen) >= m.p.TouchInterval
}

func addrChanged(s Session, addr string) bool {
	return addr != "" && addr != s.LastAddr
}

// Complete marks the upload complete (idempotent: a complete session is
// returned unchanged) and sets its SweepAt to the file's expiry: FileExpires
// if the slot gave one, else now+FileRetention, else never. Under a History
// bound a file kept for ever (of an upload never re-bound) has its record
// forgotten instead: SweepAt is now+History, but not before the session's
// AbsDeadline, with KeepFile set. A partial upload of a concatenation is only
// needed until the final upload is assembled, so it keeps being swept like an
// incomplete upload.
//
// The record of a complete whole upload keeps only what its later requests
// read (see compactComplete).
func (m *Sessions) Complete(ctx context.Context, uploadID string) (Session, error) {
	now := m.now()
	return m.write(ctx, uploadID, "complete upload", func(p *Session) error {
		if p.Complete {
			return errNoWrite
		}
		p.Complete = true
		p.CompletedAt = now
		switch {
		case p.Kind == KindPartial:
			p.SweepAt = m.incompleteSweepAt(*p)
		case !p.FileExpires.IsZero():
			p.SweepAt = p.FileExpires
		case m.p.FileRetention > 0:
			p.SweepAt = now.Add(m.p.FileRetention)
		case m.p.History > 0 && p.Rebinds == 0:
			p.SweepAt = maxTime(now.Add(m.p.History), p.AbsDeadline)
			p.KeepFile = true
		default:
			p.SweepAt = time.Time{}
		}
		if p.Kind == KindWhole {
			compactComplete(p)
		}
		return nil
	})
}

// write applies fn to the stored session of uploadID as Update does. When
// fn returns errNoWrite nothing is written and the session is returned as
// stored; other errors are wrapped with op.
func (m *Sessions) write(ctx context.Context, uploadID, op string, fn func(*Session) error) (Session, error) {
	var cur Session
	defer m.reads.drop(uploadID)
	out, err := m.store.Update(ctx, uploadID, func(p *Session) error {
		cur = *p
		return fn(p)
	})
	switch {
	case errors.Is(err, errNoWrite):
		return cur, nil
	case err != nil:
		return Session{}, fmt.Errorf("%s: %w", op, err)
	}
	return out, nil
}

// compactComplete drops from the session of a complete whole upload what no
// later request reads: the slot's signature hash and content type, the
// creation times (only Rebind reads them, and a complete upload is not
// re-bound), and, unless the upload was re-bound (hook events then name its
// new slot) or its record is to be forgotten (the clean-up then checks that
// its ID derives from its slot path), the slot path, protocol and uploader.
// What stays: the slot key (a GET tells a moved slot by it), kind, size,
// deadlines and the last address (a retry within the session slides and
// counts as before), the times of completion and expiry.
func compactComplete(p *Session) {
	p.SignatureHash = [32]byte{}
	p.Type = ""
	p.Created = time.Time{}
	p.FirstCreated = time.Time{}
	if p.Rebinds == 0 && !p.KeepFile {
		p.SlotPath = ""
		p.Protocol = ""
		p.Subject = ""
	}
}

// KeepRecord keeps for ever the record of a complete upload that the
// clean-up must not forget after all (its ID does not derive from its slot
// path: the upload started over under a new ID): it clears KeepFile and
// SweepAt, and the slot path that only the clean-up needed.
func (m *Sessions) KeepRecord(ctx context.Context, uploadID string) (Session, error) {
	return m.write(ctx, uploadID, "keep upload record", func(p *Session) error {
		if !p.KeepFile {
			return errNoWrite
		}
		p.KeepFile = false
		p.SweepAt = time.Time{}
		compactComplete(p)
		return nil
	})
}

// Rebind re-authorises an incomplete upload with a fresh verified slot, for a
// client that was offline past its session's deadline. The slot must sign the
// same file, else ErrRebindMismatch: the same file name (the last segment of
// the slot path), the same size and type (where both are known), and, when
// both the session and the slot come from JWT slots, the same Subject (a
// session keeps the Subject of its last JWT slot across re-binds by slots
// that name no uploader, so that the uploader can never change). Only
// the whole upload of a slot is re-bound (ErrRebindMismatch for a partial
// one), and only to a slot that no other upload holds (ErrSlotTaken: the
// slot's own upload, or one re-bound to it, keeps it). It is allowed even
// after the session expired, until the upload's retention ends (then
// ErrSessionExpired); at most MaxRebinds times and within MaxAge of
// FirstCreated (else ErrRebindLimit); ErrUploadComplete for a complete upload.
//
// Atomically it maps the new slot to the upload, opens new deadlines (the
// absolute one capped by FirstCreated+MaxAge), increments Rebinds and takes
// the slot's SignatureHash, Protocol, Subject (if it has one), SlotPath and FileExpires. The
// slots mapped to the upload before stay mapped to it. Repeating it with the
// same slot (same SignatureHash and slot path) while the session lives returns
// the session unchanged, without counting again; for a complete upload, whose
// record no longer keeps the signature hash, the same slot path is enough.
func (m *Sessions) Rebind(ctx context.Context, uploadID string, slot Slot, addr string) (Session, error) {
	if slot.Path == "" {
		return Session{}, errors.New("rebind upload: slot without path")
	}
	now := m.now()
	key := SlotKey(slot.Path)
	// A slot with an upload of its own is not re-bound to another one. Its
	// mapping is implied (Policy.IDKey), so the store cannot refuse it.
	if m.p.IDKey != nil {
		if own := DeriveUploadID(m.p.IDKey, slot.Path); own != uploadID {
			switch o, err := m.store.Get(ctx, own); {
			case err == nil && o.Kind == KindWhole:
				return Session{}, fmt.Errorf("rebind upload: %w", ErrSlotTaken)
			case err != nil && !errors.Is(err, ErrSessionNotFound):
				return Session{}, fmt.Errorf("rebind upload: %w", err)
			}
		}
	}
	var cur Session
	defer m.reads.drop(uploadID)
	out, err := m.store.Rebind(ctx, uploadID, key, func(p *Session) error {
		cur = *p
		if p.Kind != KindWhole {
			return fmt.Errorf("a partial upload is not re-bound: %w", ErrRebindMismatch)
		}
		if p.Complete {
			if p.SlotKey == key && p.Live(now) {
				return errNoWrite // a repeated rebind (the record no longer keeps the signature hash)
			}
			return ErrUploadComplete
		}
		if p.SignatureHash == slot.SignatureHash && p.SlotKey == key && p.Live(now) {
			return errNoWrite // a repeated rebind, or the slot the session was opened with
		}
		if !p.SweepAt.IsZero() && !now.Before(p.SweepAt) {
			return fmt.Errorf("the upload's retention has ended: %w", ErrSessionExpired)
		}
		if lastSegment(slot.Path) != lastSegment(p.SlotPath) {
			return fmt.Errorf("slot and upload differ in file name: %w", ErrRebindMismatch)
		}
		if slot.Size >= 0 && p.Size >= 0 && slot.Size != p.Size {
			return fmt.Errorf("slot size %d, upload size %d: %w", slot.Size, p.Size, ErrRebindMismatch)
		}
		if slot.Type != "" && p.Type != "" && slot.Type != p.Type {
			return fmt.Errorf("slot and upload differ in content type: %w", ErrRebindMismatch)
		}
		// A JWT names its uploader: another one's slot must not continue the upload.
		// The uploader a JWT slot named stays the upload's, also across a
		// re-bind by a slot that names none (v1, v2, v3).
		if slot.Protocol == ProtoJWT && (p.Protocol == ProtoJWT || p.Subject != "") && slot.Subject != p.Subject {
			return fmt.Errorf("slot and upload differ in uploader: %w", ErrRebindMismatch)
		}
		if p.Rebinds >= m.p.MaxRebinds {
			return fmt.Errorf("re-bound %d times already: %w", p.Rebinds, ErrRebindLimit)
		}
		ageCap := p.FirstCreated.Add(m.p.MaxAge)
		if !now.Before(ageCap) {
			return fmt.Errorf("the upload is older than %s: %w", m.p.MaxAge, ErrRebindLimit)
		}

		p.Rebinds++
		p.SlotKey = key
		p.SlotPath = slot.Path
		p.SignatureHash = slot.SignatureHash
		p.Protocol = slot.Protocol
		if slot.Subject != "" {
			p.Subject = slot.Subject
		}
		p.FileExpires = slot.FileExpires
		if p.Size < 0 {
			p.Size = slot.Size
		}
		if p.Type == "" {
			p.Type = slot.Type
		}
		p.Created = now
		p.LastSeen = now
		p.AbsDeadline = minTime(now.Add(m.p.MaxTTL), ageCap)
		p.IdleDeadline = minTime(now.Add(m.p.IdleTTL), p.AbsDeadline)
		if addrChanged(*p, addr) {
			p.LastAddr = addr
			p.Addrs++
		}
		p.SweepAt = m.incompleteSweepAt(*p)
		return nil
	})
	switch {
	case errors.Is(err, errNoWrite):
		return cur, nil
	case err != nil:
		return Session{}, fmt.Errorf("rebind upload: %w", err)
	}
	return out, nil
}

// Due returns up to limit sessions whose SweepAt has passed, oldest first: the
// uploads that the clean-up deletes (data first, then Forget).
func (m *Sessions) Due(ctx context.Context, limit int) ([]Session, error) {
	due, err := m.store.Expired(ctx, m.now(), limit)
	if err != nil {
		return nil, fmt.Errorf("list due upload sessions: %w", err)
	}
	return due, nil
}

// Forget deletes the session of an upload and its slot mappings (idempotent).
func (m *Sessions) Forget(ctx context.Context, uploadID string) error {
	defer m.reads.drop(uploadID)
	if err := m.store.Delete(ctx, uploadID); err != nil {
		return fmt.Errorf("forget upload session: %w", err)
	}
	return nil
}

// Ping reports whether the session store is reachable (for /readyz).
func (m *Sessions) Ping(ctx context.Context) error {
	if err := m.store.Ping(ctx); err != nil {
		return fmt.Errorf("check session store: %w", err)
	}
	return nil
}

// incompleteSweepAt is when the clean-up may delete an incomplete upload: the
// retention period after the session's deadline.
func (m *Sessions) incompleteSweepAt(s Session) time.Time {
	return s.Deadline().Add(m.p.Retention)
}

// lastSegment is the last segment of a slot path: its file name.
func lastSegment(slotPath string) string {
	return slotPath[strings.LastIndexByte(slotPath, '/')+1:]
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

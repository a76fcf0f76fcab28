package record

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// Version is the first byte of a binary session record. A record that
// starts with '{' is the JSON record of earlier versions.
const Version = 1

// Field bits of a binary record: a field whose bit is clear is zero (or
// false, or empty) and takes no bytes. Fields follow the mask in bit order.
const (
	fSlotKey = 1 << iota // raw 32 bytes when fSlotKeyHex, else a string
	fSlotPath
	fKind // one byte: kindCodes index + 1, or 0 and a string
	fProtocol
	fSubject
	fSignatureHash // raw 32 bytes
	fSize          // zig-zag varint
	fType
	fCreated // the first time present: seconds (zig-zag) and nanoseconds;
	fLastSeen
	fIdleDeadline
	fAbsDeadline
	fFileExpires
	fCompletedAt
	fFirstCreated
	fSweepAt // later ones: their difference from it, seconds and nanoseconds (zig-zag)
	fComplete
	fRebinds // zig-zag varint
	fLastAddr
	fAddrs // zig-zag varint
	fKeepFile
	fSlotKeyHex // SlotKey is 64 lower-case hex digits, kept as 32 bytes

	fAll = fSlotKeyHex<<1 - 1
)

// The kinds and protocols a record names by a one-byte code (its index + 1).
var (
	kindCodes     = []auth.Kind{auth.KindWhole, auth.KindPartial}
	protocolCodes = []auth.Protocol{auth.ProtoV1, auth.ProtoV2, auth.ProtoToken, auth.ProtoV3, auth.ProtoJWT}
)

// Encode returns the binary record of s, without its upload ID (the stores
// key records by it): a version byte, a varint mask of the fields that are
// not zero, then those fields. Strings are a varint length and their bytes,
// the slot key and signature hash raw bytes, an IP address (LastAddr as
// netip prints it) 4 or 16 bytes, times varints relative to the first one.
// A record whose mask has bits this version does not know is refused by
// Decode: it comes from a newer version.
func Encode(s auth.Session) ([]byte, error) {
	if len(s.UploadID) > MaxUploadID {
		return nil, fmt.Errorf("encode session: upload id longer than %d bytes", MaxUploadID)
	}
	var mask uint64
	set := func(bit uint64, on bool) {
		if on {
			mask |= bit
		}
	}
	slotRaw, hexKey := hexKey(s.SlotKey)
	set(fSlotKey, s.SlotKey != "")
	set(fSlotKeyHex, hexKey)
	set(fSlotPath, s.SlotPath != "")
	set(fKind, s.Kind != "")
	set(fProtocol, s.Protocol != "")
	set(fSubject, s.Subject != "")
	set(fSignatureHash, s.SignatureHash != [32]byte{})
	set(fSize, s.Size != 0)
	set(fType, s.Type != "")
	ts := times(&s)
	for i, t := range ts {
		set(fCreated<<i, !t.IsZero())
	}
	set(fComplete, s.Complete)
	set(fRebinds, s.Rebinds != 0)
	set(fLastAddr, s.LastAddr != "")
	set(fAddrs, s.Addrs != 0)
	set(fKeepFile, s.KeepFile)

	b := make([]byte, 0, 96+len(s.SlotPath)+len(s.Subject)+len(s.Type))
	b = append(b, Version)
	b = binary.AppendUvarint(b, mask)
	if mask&fSlotKey != 0 {
		if hexKey {
			b = append(b, slotRaw[:]...)
		} else {
			b = appendString(b, s.SlotKey)
		}
	}
	if mask&fSlotPath != 0 {
		b = appendString(b, s.SlotPath)
	}
	if mask&fKind != 0 {
		b = appendCoded(b, kindCodes, s.Kind)
	}
	if mask&fProtocol != 0 {
		b = appendCoded(b, protocolCodes, s.Protocol)
	}
	if mask&fSubject != 0 {
		b = appendString(b, s.Subject)
	}
	if mask&fSignatureHash != 0 {
		b = append(b, s.SignatureHash[:]...)
	}
	if mask&fSize != 0 {
		b = binary.AppendVarint(b, s.Size)
	}
	if mask&fType != 0 {
		b = appendString(b, s.Type)
	}
	var first time.Time
	for i, t := range ts {
		if mask&(fCreated<<i) == 0 {
			continue
		}
		if first.IsZero() {
			first = *t
			b = binary.AppendVarint(b, first.Unix())
			b = binary.AppendUvarint(b, uint64(first.Nanosecond()))
			continue
		}
		b = binary.AppendVarint(b, t.Unix()-first.Unix())
		b = binary.AppendVarint(b, int64(t.Nanosecond()-first.Nanosecond()))
	}
	if mask&fRebinds != 0 {
		b = binary.AppendVarint(b, int64(s.Rebinds))
	}
	if mask&fLastAddr != 0 {
		if ip, err := netip.ParseAddr(s.LastAddr); err == nil && ip.String() == s.LastAddr && ip.Zone() == "" {
			raw := ip.AsSlice()
			b = binary.AppendUvarint(b, uint64(len(raw))<<1|1)
			b = append(b, raw...)
		} else {
			b = binary.AppendUvarint(b, uint64(len(s.LastAddr))<<1)
			b = append(b, s.LastAddr...)
		}
	}
	if mask&fAddrs != 0 {
		b = binary.AppendVarint(b, int64(s.Addrs))
	}
	return b, nil
}

// Decode reads the session of uploadID from its record: binary, or the
// JSON of earlier versions.
func Decode(uploadID string, v []byte) (auth.Session, error) {
	switch {
	case len(v) == 0:
		return auth.Session{}, errors.New("decode session record: empty record")
	case v[0] == '{':
		var s auth.Session
		if err := json.Unmarshal(v, &s); err != nil {
			return auth.Session{}, fmt.Errorf("decode session record: %w", err)
		}
		s.UploadID = uploadID
		return s, nil
	case v[0] != Version:
		return auth.Session{}, fmt.Errorf("decode session record: unknown record version %d (a newer uploadgate wrote it?)", v[0])
	}
	d := decoder{b: v[1:]}
	s, err := d.session(uploadID)
	if err != nil {
		return auth.Session{}, fmt.Errorf("decode session record: %w", err)
	}
	return s, nil
}

var errShort = errors.New("record ends early")

// decoder reads a binary record; its first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) session(uploadID string) (auth.Session, error) {
	s := auth.Session{UploadID: uploadID}
	mask := d.uvarint()
	if d.err == nil && mask&^fAll != 0 {
		return s, fmt.Errorf("fields %#x unknown to this version (a newer uploadgate wrote the record?)", mask&^fAll)
	}
	if mask&fSlotKey != 0 {
		if mask&fSlotKeyHex != 0 {
			s.SlotKey = hex.EncodeToString(d.bytes(32))
		} else {
			s.SlotKey = d.string()
		}
	}
	if mask&fSlotPath != 0 {
		s.SlotPath = d.string()
	}
	if mask&fKind != 0 {
		s.Kind = decodeCoded(d, kindCodes)
	}
	if mask&fProtocol != 0 {
		s.Protocol = decodeCoded(d, protocolCodes)
	}
	if mask&fSubject != 0 {
		s.Subject = d.string()
	}
	if mask&fSignatureHash != 0 {
		copy(s.SignatureHash[:], d.bytes(32))
	}
	if mask&fSize != 0 {
		s.Size = d.varint()
	}
	if mask&fType != 0 {
		s.Type = d.string()
	}
	var first time.Time
	for i, t := range times(&s) {
		if mask&(fCreated<<i) == 0 {
			continue
		}
		if first.IsZero() {
			sec, ns := d.varint(), d.uvarint()
			if ns >= 1e9 {
				d.fail(errors.New("bad nanoseconds"))
			}
			first = time.Unix(sec, int64(ns)).UTC()
			*t = first
			continue
		}
		sec, ns := d.varint(), d.varint()
		*t = time.Unix(first.Unix()+sec, int64(first.Nanosecond())+ns).UTC()
	}
	s.Complete = mask&fComplete != 0
	if mask&fRebinds != 0 {
		s.Rebinds = int(d.varint())
	}
	if mask&fLastAddr != 0 {
		n := d.uvarint()
		raw := d.bytes(int(min(n>>1, uint64(len(d.b)+1))))
		if n&1 == 0 {
			s.LastAddr = string(raw)
		} else if ip, ok := netip.AddrFromSlice(raw); ok {
			s.LastAddr = ip.String()
		} else {
			d.fail(errors.New("bad address"))
		}
	}
	if mask&fAddrs != 0 {
		s.Addrs = int(d.varint())
	}
	s.KeepFile = mask&fKeepFile != 0
	if d.err == nil && len(d.b) != 0 {
		d.fail(errors.New("bytes after the record"))
	}
	return s, d.err
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n int) []byte {
	if n < 0 || n > len(d.b) {
		d.fail(errShort)
		return make([]byte, max(n, 0))
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail(errShort)
		return ""
	}
	return string(d.bytes(int(n)))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendCoded appends v as its code in codes, or 0 and v as a string.
func appendCoded[T ~string](b []byte, codes []T, v T) []byte {
	for i, c := range codes {
		if c == v {
			return append(b, byte(i+1))
		}
	}
	return appendString(append(b, 0), string(v))
}

func decodeCoded[T ~string](d *decoder, codes []T) T {
	c := d.bytes(1)[0]
	switch {
	case c == 0:
		return T(d.string())
	case int(c) <= len(codes):
		return codes[c-1]
	}
	d.fail(fmt.Errorf("unknown code %d", c))
	return ""
}

// hexKey returns the 32 bytes of a slot key that is 64 lower-case hex
// digits (as auth.SlotKey gives), and whether it is one.
func hexKey(k string) (raw [32]byte, ok bool) {
	if len(k) != 64 {
		return raw, false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return raw, false
		}
	}
	_, err := hex.Decode(raw[:], []byte(k))
	return raw, err == nil
}

// SlotIndexKey is the key under which a store may index a slot: the 32
// bytes of a slot key that auth.SlotKey gave, else the slot key itself,
// escaped so that no two slot keys share an index key: one of 32 bytes, or
// one that ends with a zero byte and is longer, gets a zero byte appended.
func SlotIndexKey(slotKey string) []byte {
	if raw, ok := hexKey(slotKey); ok {
		return raw[:]
	}
	k := []byte(slotKey)
	if len(k) == 32 || len(k) > 32 && k[len(k)-1] == 0 {
		k = append(k, 0)
	}
	return k
}

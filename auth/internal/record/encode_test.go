package record_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/internal/record"
	"github.com/uploadgate/uploadgate/auth/sessiontest"
)

// roundTrip encodes s and decodes it again under its upload ID.
func roundTrip(t *testing.T, s auth.Session) auth.Session {
	t.Helper()
	v, err := record.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	if v[0] != record.Version {
		t.Fatalf("record starts with %#x, want the version %#x", v[0], record.Version)
	}
	got, err := record.Decode(s.UploadID, v)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestRecordRoundTrip(t *testing.T) {
	full := record.Stored(sessiontest.Sample(7))
	odd := full
	odd.SlotKey = "not-a-hex-slot-key"
	odd.Kind = "other"
	odd.Protocol = "v9"
	odd.LastAddr = "2001:db8::1%eth0" // not an address netip prints back
	odd.SlotPath, odd.Type = "caf\xe9/\x00.jpg", "image/\xff"
	odd.Size, odd.Rebinds, odd.Addrs = -1, -2, 1<<40
	old := full
	for _, p := range []*time.Time{&old.Created, &old.SweepAt, &old.FileExpires} {
		*p = time.Date(1601, 1, 1, 0, 0, 0, 999999999, time.UTC)
	}
	old.FirstCreated = time.Date(9999, 12, 31, 23, 59, 59, 1, time.UTC)
	ipv6 := full
	ipv6.LastAddr = "2001:db8::7"
	tests := []struct {
		name string
		s    auth.Session
	}{
		{"every field set", full},
		{"zero session but its ID", auth.Session{UploadID: full.UploadID}},
		{"strings that are not codes, hex or UTF-8", odd},
		{"times beyond Unix nanoseconds", old},
		{"IPv6 address", ipv6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := roundTrip(t, tc.s); !sessiontest.Equal(got, tc.s) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tc.s)
			}
		})
	}
}

// The record of a complete upload as Complete leaves it stays small.
func TestRecordSize(t *testing.T) {
	now := time.Date(2030, 3, 4, 10, 0, 0, 123456789, time.UTC)
	s := auth.Session{
		UploadID:     "a",
		SlotKey:      auth.SlotKey("0123456789abcdef0123456789abcdef01234567/IMG_000001.jpg"),
		Kind:         auth.KindWhole,
		Size:         1 << 20,
		LastSeen:     now,
		IdleDeadline: now.Add(24 * time.Hour),
		AbsDeadline:  now.Add(72 * time.Hour),
		Complete:     true,
		CompletedAt:  now.Add(3 * time.Second),
		LastAddr:     "198.51.100.7",
	}
	v, err := record.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) > 72 {
		t.Errorf("record of a complete upload is %d bytes, want at most 72", len(v))
	}
	if got := roundTrip(t, s); !sessiontest.Equal(got, s) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, s)
	}
}

// The JSON records of earlier versions still decode, under the ID given.
func TestRecordDecodesJSON(t *testing.T) {
	s := record.Stored(sessiontest.Sample(2))
	v, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := record.Decode(s.UploadID, v)
	if err != nil {
		t.Fatal(err)
	}
	if !sessiontest.Equal(got, s) {
		t.Errorf("JSON record:\n got %+v\nwant %+v", got, s)
	}
}

func TestRecordRefusesWhatItCannotRead(t *testing.T) {
	v, err := record.Encode(record.Stored(sessiontest.Sample(1)))
	if err != nil {
		t.Fatal(err)
	}
	newer := []byte{record.Version, 0x80, 0x80, 0x80, 0x80, 0x01} // a field bit of a later version
	tests := []struct {
		name string
		v    []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"another version", append([]byte{record.Version + 1}, v[1:]...), "version"},
		{"fields of a newer version", newer, "unknown to this version"},
		{"truncated", v[:len(v)-3], "ends early"},
		{"trailing bytes", append(v[:len(v):len(v)], 0), "after the record"},
		{"broken JSON", []byte(`{"upload_id":`), "decode session record"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := record.Decode("id", tc.v)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode = %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// Slot index keys never collide: hex slot keys become their 32 bytes, and
// other keys of 32 bytes, or longer ones ending in a zero byte, are escaped.
func TestSlotIndexKey(t *testing.T) {
	hexKey := auth.SlotKey("a/b.jpg")
	raw := string(record.SlotIndexKey(hexKey))
	keys := []string{
		hexKey, strings.ToUpper(hexKey), raw, raw + "\x00", raw + "\x00\x00",
		"short", "", strings.Repeat("x", 31), strings.Repeat("x", 33) + "\x00",
	}
	seen := map[string]string{}
	for _, k := range keys {
		ik := string(record.SlotIndexKey(k))
		if prev, ok := seen[ik]; ok {
			t.Errorf("slot keys %q and %q share the index key %q", prev, k, ik)
		}
		seen[ik] = k
	}
	if len(raw) != 32 {
		t.Errorf("index key of a hex slot key is %d bytes, want 32", len(raw))
	}
}

package auth_test

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/uploadgate/uploadgate/auth"
)

// requestFor builds the request a client makes with a minted slot, as the gateway reads it.
func requestFor(t *testing.T, s auth.SignedSlot, base string, size int64, ctype *string) auth.SlotRequest {
	t.Helper()
	req := slotFromURL(t, s.PutURL, base, size, ctype)
	req.Authorization = s.Authorization
	return req
}

func TestSignSlotMatchesProsody(t *testing.T) {
	// Slots minted with the directory Prosody chose must be byte-for-byte the URLs it issued.
	tests := []struct {
		name string
		req  auth.SignRequest
		want string
	}{
		{
			name: "v1 captured",
			req:  auth.SignRequest{BaseURL: "https://upload.example.org/upload/", Dir: "90c2f946-9a8c-4b44-aa9b-d75f312b8799", Name: "holiday photo.jpg", Size: sizeA, Protocol: auth.ProtoV1},
			want: "https://upload.example.org/upload/90c2f946-9a8c-4b44-aa9b-d75f312b8799/holiday%20photo.jpg?v=c81641a0d5cceda78d62337b415bb3b32eeeed9b8687a46316487658914fd95a",
		},
		{
			name: "v1 captured UTF-8",
			req:  auth.SignRequest{BaseURL: "https://upload.example.org/upload/", Dir: "88a7e8db-8a46-4598-8540-d3de6d2c58f6", Name: "Grüße 😀.txt", Size: 0, Protocol: auth.ProtoV1},
			want: "https://upload.example.org/upload/88a7e8db-8a46-4598-8540-d3de6d2c58f6/Gr%c3%bc%c3%9fe%20%f0%9f%98%80.txt?v=0b46832db8513f3f75e60d245064fbc8597a17acb6424e4f62b1f80b6e505131",
		},
		{
			name: "v2 captured",
			req:  auth.SignRequest{BaseURL: "https://upload.example.org/upload/", Dir: "8a4c0c53-6af8-4219-9cda-27b90c647039", Name: "holiday photo.jpg", Size: sizeA, Type: strp("image/jpeg"), Protocol: auth.ProtoV2},
			want: "https://upload.example.org/upload/8a4c0c53-6af8-4219-9cda-27b90c647039/holiday%20photo.jpg?v2=0c8f787d49a30fb476a22a6b557115379d71fa75557f3fac198c532bbce2ddd2",
		},
		{
			name: "v2 captured without type",
			req:  auth.SignRequest{BaseURL: "https://upload.example.org/upload", Dir: "6bf50282-a3ce-4acb-958c-031c88ba54ac", Name: "noct.bin", Size: 10, Protocol: auth.ProtoV2},
			want: "https://upload.example.org/upload/6bf50282-a3ce-4acb-958c-031c88ba54ac/noct.bin?v2=9a7298e5dc2104529843675832beb65cfdaf23349bf74fd56c9e8cd835c35906",
		},
		{
			name: "V1-b escaping",
			req:  auth.SignRequest{BaseURL: "https://upload.example.org/upload/", Dir: "6f1c2a9e-2d7b-4f61-9a0e-3b5c7d9e1f20", Name: "a?b#c%d&e=f+g.png", Size: 42, Protocol: auth.ProtoV1},
			want: "https://upload.example.org/upload/6f1c2a9e-2d7b-4f61-9a0e-3b5c7d9e1f20/a%3fb%23c%25d%26e%3df%2bg.png?v=" + macV1b,
		},
		{
			name: "T-a token",
			req:  auth.SignRequest{BaseURL: "http://127.0.0.1:8080/upload/", Dir: "4a8e1c2b-9f3d-4c1e-8a77-0d2f5e6b7c11", Name: "holiday photo.jpg", Size: sizeA, Type: strp("image/jpeg"), Protocol: auth.ProtoToken},
			want: "http://127.0.0.1:8080/upload/4a8e1c2b-9f3d-4c1e-8a77-0d2f5e6b7c11/holiday%20photo.jpg?token=" + macV2a,
		},
		{
			name: "E-a ejabberd-style directory",
			req:  auth.SignRequest{BaseURL: "https://upload.example.org/upload/", Dir: "43feddb25776a343c69835c7e79dc2c7f59598a6/Xq3nZ7pL0aR5tY8uW2eK9mB4vC6xD1fG3hJ5kL7n", Name: "très_cool.jpg", Size: 23456, Protocol: auth.ProtoV1},
			want: "https://upload.example.org/upload/43feddb25776a343c69835c7e79dc2c7f59598a6/Xq3nZ7pL0aR5tY8uW2eK9mB4vC6xD1fG3hJ5kL7n/tr%c3%a8s_cool.jpg?v=" + macEa,
		},
		{
			name: "H-v3",
			req: auth.SignRequest{BaseURL: "https://upload.example.org/upload/", Dir: "4a8e1c2b-9f3d-4c1e-8a77-0d2f5e6b7c11", Name: "holiday photo.jpg", Size: sizeA,
				Protocol: auth.ProtoV3, TTL: 10 * time.Minute, Now: time.Unix(expiresH3-600, 0)},
			want: "https://upload.example.org/upload/4a8e1c2b-9f3d-4c1e-8a77-0d2f5e6b7c11/holiday%20photo.jpg?v3=" + macH3 + "&expires=1795000000",
		},
		{
			name: "H-v3 default TTL",
			req: auth.SignRequest{BaseURL: "https://upload.example.org/upload/", Dir: "4a8e1c2b-9f3d-4c1e-8a77-0d2f5e6b7c11", Name: "holiday photo.jpg", Size: sizeA,
				Protocol: auth.ProtoV3, Now: time.Unix(expiresH3-300, 0)},
			want: "https://upload.example.org/upload/4a8e1c2b-9f3d-4c1e-8a77-0d2f5e6b7c11/holiday%20photo.jpg?v3=" + macH3 + "&expires=1795000000",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := auth.SignSlot(testSecret, tt.req)
			if err != nil {
				t.Fatalf("SignSlot: %v", err)
			}
			if got.PutURL != tt.want {
				t.Errorf("PutURL = %s\nwant     %s", got.PutURL, tt.want)
			}
			wantGet, _, _ := strings.Cut(tt.want, "?")
			if got.GetURL != wantGet {
				t.Errorf("GetURL = %s, want %s", got.GetURL, wantGet)
			}
			if got.Authorization != "" {
				t.Errorf("Authorization = %q, want none", got.Authorization)
			}
			if wantPath := tt.req.Dir + "/" + tt.req.Name; got.Path != wantPath {
				t.Errorf("Path = %q, want %q", got.Path, wantPath)
			}
		})
	}
}

func TestSignSlotJWT(t *testing.T) {
	now := time.Unix(now0, 0)
	got, err := auth.SignSlot(testSecret, auth.SignRequest{
		BaseURL: "https://upload.example.org/share/", Dir: slotBrief, Name: "holiday photo.jpg",
		Size: sizeA, Type: strp("image/jpeg"), Protocol: auth.ProtoJWT, TTL: 300 * time.Second, Now: now,
	})
	if err != nil {
		t.Fatalf("SignSlot: %v", err)
	}
	wantURL := "https://upload.example.org/share/" + slotBrief + "/holiday%20photo.jpg"
	if got.PutURL != wantURL || got.GetURL != wantURL {
		t.Errorf("PUT %s, GET %s; want both %s", got.PutURL, got.GetURL, wantURL)
	}
	token, ok := strings.CutPrefix(got.Authorization, "Bearer ")
	if !ok {
		t.Fatalf("Authorization = %q, want Bearer", got.Authorization)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	for i, want := range []string{
		`{"alg":"HS256","typ":"JWT"}`,
		`{"slot":"` + slotBrief + `","iat":1795000000,"exp":1795000300,"sub":"uploadgate-sign","filename":"holiday photo.jpg","filesize":123456,"filetype":"image/jpeg"}`,
	} {
		seg, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || string(seg) != want {
			t.Errorf("segment %d = %s (%v), want %s", i, seg, err, want)
		}
	}
	if want := makeJWT(`{"alg":"HS256","typ":"JWT"}`, mustDecode(t, parts[1]), testSecret, sha256.New); token != want {
		t.Errorf("token signature differs from an independent HMAC")
	}

	// Without a type the claim says application/octet-stream, as Prosody's does.
	got, err = auth.SignSlot(testSecret, auth.SignRequest{BaseURL: "https://h/share/", Dir: "s", Name: "n", Size: 1, Protocol: auth.ProtoJWT, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	payload := mustDecode(t, strings.Split(strings.TrimPrefix(got.Authorization, "Bearer "), ".")[1])
	if !strings.Contains(payload, `"filetype":"application/octet-stream"`) || !strings.Contains(payload, `"exp":1795000300`) {
		t.Errorf("payload %s: want the default type and a 5 minute TTL", payload)
	}
}

func mustDecode(t *testing.T, seg string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSignVerifyRoundTrip(t *testing.T) {
	now := time.Unix(now0, 0)
	bases := []struct{ url, path string }{
		{"http://127.0.0.1:8080/upload/", "/upload/"},
		{"http://127.0.0.1:8080/upload", "/upload/"},
		{"https://files.example.org", "/"},
		{"https://example.org/x%20y/up/", "/x y/up/"},
	}
	names := []string{"hello.txt", "holiday photo.jpg", "Grüße 😀.txt", "a?b#c%d&e=f+g.png", "semi;colon,comma@at:colon", "100%.bin"}
	types := []*string{nil, strp(""), strp("text/plain; charset=utf-8")}
	// uuidV4 matches what Prosody's util.uuid.generate produces.
	uuidV4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for _, proto := range auth.Protocols {
		for _, base := range bases {
			for _, name := range names {
				for _, typ := range types {
					t.Run(string(proto)+"/"+base.url+"/"+name, func(t *testing.T) {
						s, err := auth.SignSlot(testSecret, auth.SignRequest{BaseURL: base.url, Name: name, Size: 77, Type: typ, Protocol: proto, Now: now})
						if err != nil {
							t.Fatalf("SignSlot: %v", err)
						}
						dir, gotName, _ := strings.Cut(s.Path, "/")
						if gotName != name {
							t.Fatalf("Path %q does not end in the name %q", s.Path, name)
						}
						if !uuidV4.MatchString(dir) {
							t.Errorf("random directory %q is not a UUIDv4", dir)
						}
						req := requestFor(t, s, base.path, 77, typ)
						if req.Path != s.Path {
							t.Fatalf("decoded PUT path %q, want %q", req.Path, s.Path)
						}
						v, err := auth.NewVerifier([]string{testSecret, "other"}, auth.WithClock(clockAt(now0+60)))
						if err != nil {
							t.Fatal(err)
						}
						slot, err := v.Verify(req)
						if err != nil {
							t.Fatalf("Verify: %v", err)
						}
						if slot.Protocol != proto || slot.Path != s.Path {
							t.Errorf("slot %s %q, want %s %q", slot.Protocol, slot.Path, proto, s.Path)
						}
						// A second secret signs nothing the first one verifies.
						if _, err := newVerifier(t, now0, "other").Verify(req); !errors.Is(err, auth.ErrBadSignature) {
							t.Errorf("Verify under another secret: %v, want ErrBadSignature", err)
						}
						// The GET URL alone authorises nothing.
						get := slotFromURL(t, s.GetURL, base.path, 77, typ)
						if _, err := v.Verify(get); !errors.Is(err, auth.ErrNoSignature) {
							t.Errorf("Verify of the GET URL: %v, want ErrNoSignature", err)
						}
					})
				}
			}
		}
	}
}

func TestSignSlotRandomDirectory(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		s, err := auth.SignSlot(testSecret, auth.SignRequest{BaseURL: "http://h/upload/", Name: "f", Size: 1, Protocol: auth.ProtoV1})
		if err != nil {
			t.Fatal(err)
		}
		dir, _, _ := strings.Cut(s.Path, "/")
		if seen[dir] {
			t.Fatalf("directory %q drawn twice", dir)
		}
		seen[dir] = true
	}
}

func TestSignSlotRejects(t *testing.T) {
	ok := auth.SignRequest{BaseURL: "http://h/upload/", Dir: "d", Name: "f", Size: 1, Protocol: auth.ProtoV2}
	tests := []struct {
		name   string
		secret string
		edit   func(*auth.SignRequest)
	}{
		{"empty secret", "", func(*auth.SignRequest) {}},
		{"empty name", testSecret, func(r *auth.SignRequest) { r.Name = "" }},
		{"name with slash", testSecret, func(r *auth.SignRequest) { r.Name = "a/b" }},
		{"name dot-dot", testSecret, func(r *auth.SignRequest) { r.Name = ".." }},
		{"name with NUL", testSecret, func(r *auth.SignRequest) { r.Name = "a\x00b" }},
		{"negative size", testSecret, func(r *auth.SignRequest) { r.Size = -1 }},
		{"negative TTL", testSecret, func(r *auth.SignRequest) { r.TTL = -time.Second }},
		{"unknown protocol", testSecret, func(r *auth.SignRequest) { r.Protocol = "v4" }},
		{"no protocol", testSecret, func(r *auth.SignRequest) { r.Protocol = "" }},
		{"relative base URL", testSecret, func(r *auth.SignRequest) { r.BaseURL = "/upload/" }},
		{"empty base URL", testSecret, func(r *auth.SignRequest) { r.BaseURL = "" }},
		{"base URL with query", testSecret, func(r *auth.SignRequest) { r.BaseURL = "http://h/upload/?x=1" }},
		{"unparsable base URL", testSecret, func(r *auth.SignRequest) { r.BaseURL = "http://h/%zz/" }},
		{"directory with empty segment", testSecret, func(r *auth.SignRequest) { r.Dir = "a//b" }},
		{"directory dot-dot", testSecret, func(r *auth.SignRequest) { r.Dir = "a/.." }},
		{"jwt directory of two segments", testSecret, func(r *auth.SignRequest) { r.Dir, r.Protocol = "a/b", auth.ProtoJWT }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := ok
			tt.edit(&req)
			if s, err := auth.SignSlot(tt.secret, req); err == nil {
				t.Fatalf("SignSlot = %+v, want an error", s)
			}
		})
	}
	if _, err := auth.SignSlot(testSecret, ok); err != nil {
		t.Fatalf("the unedited request fails: %v", err)
	}
}

// gatewayRequest reads a minted slot the way the gateway does (parseSlotPath
// and safeSegment in gateway/paths.go): the escaped URL path after base, split
// at '/', each segment percent-decoded and then checked. It returns the slot
// request and the decoded segments, or an error where the gateway answers 400.
func gatewayRequest(s auth.SignedSlot, base string, size int64, ctype *string) (auth.SlotRequest, []string, error) {
	u, err := url.Parse(s.PutURL)
	if err != nil {
		return auth.SlotRequest{}, nil, fmt.Errorf("parse PUT URL: %w", err)
	}
	rest, ok := strings.CutPrefix(u.EscapedPath(), base)
	if !ok || rest == "" {
		return auth.SlotRequest{}, nil, fmt.Errorf("%q is not under %q", u.EscapedPath(), base)
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 2 {
		return auth.SlotRequest{}, nil, fmt.Errorf("%q has no directory", rest)
	}
	segs := make([]string, len(parts))
	for i, p := range parts {
		seg, err := url.PathUnescape(p)
		if err != nil {
			return auth.SlotRequest{}, nil, fmt.Errorf("segment %q: %w", p, err)
		}
		if !gatewaySafeSegment(seg) {
			return auth.SlotRequest{}, nil, fmt.Errorf("segment %q is refused", seg)
		}
		segs[i] = seg
	}
	path := strings.Join(segs, "/")
	return auth.SlotRequest{
		Path: path, URLPath: strings.TrimSuffix(base, "/") + "/" + path, Query: u.Query(),
		Authorization: s.Authorization, Size: size, ContentType: ctype,
	}, segs, nil
}

// gatewaySafeSegment is the gateway's rule for one decoded path segment.
func gatewaySafeSegment(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 1024 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '/' || c == '\\' || c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// gatewayAcceptsShape reports whether the gateway can accept a slot for dir
// and name under proto, judged from their shape alone ("" dir: a random one).
func gatewayAcceptsShape(dir, name string, proto auth.Protocol) bool {
	segs := []string{name}
	if dir != "" {
		segs = append(segs, strings.Split(dir, "/")...)
	}
	if proto == auth.ProtoJWT && len(segs) > 2 {
		// The slot claim is the first segment, the filename claim the rest.
		return false
	}
	for _, seg := range segs {
		if !gatewaySafeSegment(seg) {
			return false
		}
		if proto == auth.ProtoJWT && !utf8.ValidString(seg) {
			// JSON claims would carry U+FFFD instead.
			return false
		}
	}
	return true
}

func TestSignSlotRefusesWhatTheGatewayRefuses(t *testing.T) {
	long := strings.Repeat("a", 1025)
	longUTF8 := strings.Repeat("é", 512) + "x" // 1025 bytes, 513 characters
	tests := []struct {
		name    string
		segment string
		jwtOnly bool   // refused for JWT slots only
		reason  string // part of the error
	}{
		{"empty", "", false, "is empty"},
		{"dot", ".", false, "dot segment"},
		{"dot-dot", "..", false, "dot segment"},
		{"slash", "a/b", false, "'/'"},
		{"backslash", `a\b`, false, `'\'`},
		{"NUL", "\x00", false, "control character 0x00"},
		{"unit separator", "\x1f", false, "control character 0x1f"},
		{"DEL", "\x7f", false, "control character 0x7f"},
		{"newline inside", "a\nb.txt", false, "control character 0x0a (byte 1)"},
		{"1025 bytes", long, false, "1025 bytes long, more than 1024"},
		{"1025 bytes of UTF-8", longUTF8, false, "1025 bytes long"},
		{"invalid UTF-8", "\xff.bin", true, "not valid UTF-8 (byte 0)"},
		{"truncated UTF-8", "Gr\xc3", true, "not valid UTF-8 (byte 2)"},
		{"UTF-16 surrogate", "a\xed\xa0\x80", true, "not valid UTF-8 (byte 1)"},
	}
	for _, tt := range tests {
		for _, proto := range auth.Protocols {
			t.Run(tt.name+"/"+string(proto), func(t *testing.T) {
				req := auth.SignRequest{BaseURL: "https://h/upload/", Dir: "d", Name: tt.segment, Size: 1, Protocol: proto, Now: time.Unix(now0, 0)}
				_, err := auth.SignSlot(testSecret, req)
				if tt.jwtOnly && proto != auth.ProtoJWT {
					if err != nil {
						t.Fatalf("SignSlot(name %q): %v, want it signed (the gateway accepts it)", tt.segment, err)
					}
					return
				}
				if err == nil {
					t.Fatalf("SignSlot(name %q) signed a slot the gateway refuses", tt.segment)
				}
				if msg := err.Error(); !strings.Contains(msg, "file name ") || !strings.Contains(msg, tt.reason) {
					t.Errorf("error %q: want it to name the file name and say %q", msg, tt.reason)
				}

				// The same segment as the directory, or one segment of it.
				if tt.segment == "" {
					return // an empty Dir means a random one
				}
				if strings.Contains(tt.segment, "/") && proto != auth.ProtoJWT {
					return // '/' separates the segments of a directory
				}
				dirs := []string{tt.segment}
				if proto != auth.ProtoJWT {
					dirs = append(dirs, "user/"+tt.segment, tt.segment+"/random")
				}
				for _, dir := range dirs {
					req.Dir, req.Name = dir, "f.txt"
					_, err := auth.SignSlot(testSecret, req)
					if tt.jwtOnly && proto != auth.ProtoJWT {
						if err != nil {
							t.Errorf("SignSlot(directory %q): %v, want it signed", dir, err)
						}
						continue
					}
					if err == nil {
						t.Errorf("SignSlot(directory %q) signed a slot the gateway refuses", dir)
						continue
					}
					if msg := err.Error(); !strings.Contains(msg, "directory ") {
						t.Errorf("error %q: want it to name the directory", msg)
					} else if !strings.Contains(tt.segment, "/") && !strings.Contains(msg, tt.reason) {
						t.Errorf("error %q: want it to say %q", msg, tt.reason)
					}
				}
			})
		}
	}

	// A long name is cut short in the error, not printed whole.
	_, err := auth.SignSlot(testSecret, auth.SignRequest{BaseURL: "https://h/upload/", Name: strings.Repeat("é", 600), Size: 1, Protocol: auth.ProtoV2})
	if err == nil || len(err.Error()) > 200 || !strings.Contains(err.Error(), "… (1200 bytes)") {
		t.Errorf("error for a 1200-byte name: %v", err)
	}
}

func TestSignSlotNamesRoundTrip(t *testing.T) {
	now := time.Unix(now0, 0)
	names := []string{
		"Grüße 😀.txt", "holiday photo.jpg", "  leading and trailing spaces  ",
		"100%.bin", "%ff", "%2F", "a#b", "why?.txt", "a+b=c&d", "...", ".hidden", "a..b",
		"semi;colon,comma@at:colon'quote\"<>|*", "\u00a0nbsp\u2028line separator", "\ufeffbom",
		strings.Repeat("n", 1024), strings.Repeat("é", 512), strings.Repeat("😀", 256),
	}
	dirs := []string{"", "4a8e1c2b-9f3d-4c1e-8a77-0d2f5e6b7c11", "dir with spaces %", "ünïcödé", strings.Repeat("d", 1024)}
	multi := []string{"43feddb25776a343c69835c7e79dc2c7f59598a6/Xq3nZ7pL0aR5tY8uW2eK9mB4vC6xD1fG3hJ5kL7n", "a/b/c/d"}
	// The URL-signed protocols sign bytes: a name or directory that is not
	// UTF-8 works for them.
	bytesOnly := []string{"\xff.bin", "Gr\xc3", "\x80\x81"}
	v := newVerifier(t, now0+60, testSecret)
	for _, proto := range auth.Protocols {
		names, dirs := names, dirs
		if proto != auth.ProtoJWT {
			names = append(names[:len(names):len(names)], bytesOnly...)
			dirs = append(append(dirs[:len(dirs):len(dirs)], multi...), bytesOnly...)
		}
		for _, dir := range dirs {
			for _, name := range names {
				s, err := auth.SignSlot(testSecret, auth.SignRequest{BaseURL: "https://upload.example.org/upload/", Dir: dir, Name: name, Size: 9, Type: strp("text/plain"), Protocol: proto, Now: now})
				if err != nil {
					t.Errorf("%s: SignSlot(%q, %q): %v", proto, dir, name, err)
					continue
				}
				req, segs, err := gatewayRequest(s, "/upload/", 9, strp("text/plain"))
				if err != nil {
					t.Errorf("%s: the gateway refuses %s: %v", proto, s.PutURL, err)
					continue
				}
				if req.Path != s.Path || segs[len(segs)-1] != name || (dir != "" && req.Path != dir+"/"+name) {
					t.Errorf("%s: %s names %q, signed %q (directory %q, name %q)", proto, s.PutURL, req.Path, s.Path, dir, name)
					continue
				}
				slot, err := v.Verify(req)
				if err != nil {
					t.Errorf("%s: Verify(%s): %v", proto, s.PutURL, err)
					continue
				}
				if slot.Protocol != proto || slot.Path != s.Path {
					t.Errorf("%s: slot %s %q, want %q", proto, slot.Protocol, slot.Path, s.Path)
				}
			}
		}
	}
}

// FuzzSignSlotRoundTrip: for any directory and file name, SignSlot either
// refuses them, exactly when the gateway would refuse the slot's path, or
// mints a slot that the gateway reads back as the same path and that verifies.
func FuzzSignSlotRoundTrip(f *testing.F) {
	f.Add("", "hello.txt", uint8(0))
	f.Add("4a8e1c2b-9f3d-4c1e-8a77-0d2f5e6b7c11", "Grüße 😀.txt", uint8(4))
	f.Add("user/random", "a?b#c%d&e=f+g.png", uint8(3))
	f.Add("d", "\xff.bin", uint8(4))
	f.Add("d", `a\b`, uint8(1))
	f.Add("a/../b", "x", uint8(2))
	now := time.Unix(now0, 0)
	v := newVerifier(f, now0+60, testSecret)
	f.Fuzz(func(t *testing.T, dir, name string, proto uint8) {
		p := auth.Protocols[int(proto)%len(auth.Protocols)]
		s, err := auth.SignSlot(testSecret, auth.SignRequest{BaseURL: "https://upload.example/upload/", Dir: dir, Name: name, Size: 5, Protocol: p, Now: now})
		accepts := gatewayAcceptsShape(dir, name, p)
		if err != nil {
			if accepts {
				t.Fatalf("%s: SignSlot(%q, %q) refused a slot the gateway accepts: %v", p, dir, name, err)
			}
			if msg := err.Error(); !strings.Contains(msg, "file name ") && !strings.Contains(msg, "directory ") {
				t.Fatalf("error %q names neither the file name nor the directory", msg)
			}
			return
		}
		if !accepts {
			t.Fatalf("%s: SignSlot(%q, %q) signed a slot the gateway refuses: %s", p, dir, name, s.PutURL)
		}
		req, segs, err := gatewayRequest(s, "/upload/", 5, nil)
		if err != nil {
			t.Fatalf("%s: the gateway refuses %s: %v", p, s.PutURL, err)
		}
		if req.Path != s.Path || segs[len(segs)-1] != name || (dir != "" && req.Path != dir+"/"+name) {
			t.Fatalf("%s: %s names %q, signed %q (directory %q, name %q)", p, s.PutURL, req.Path, s.Path, dir, name)
		}
		slot, err := v.Verify(req)
		if err != nil {
			t.Fatalf("%s: Verify(%s): %v", p, s.PutURL, err)
		}
		if slot.Protocol != p || slot.Path != s.Path {
			t.Fatalf("%s: slot %s %q, want %q", p, slot.Protocol, slot.Path, s.Path)
		}
	})
}

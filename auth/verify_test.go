package auth_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"hash"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

const (
	testSecret = "test-secret-0363"
	// readmeSecret is the secret of the mod_http_upload_external README example.
	readmeSecret = "secret string"

	pathA    = "4a8e1c2b-9f3d-4c1e-8a77-0d2f5e6b7c11/holiday photo.jpg"
	urlPathA = "/upload/" + pathA
	sizeA    = 123456
	pathB    = "d1f0c3a2/Grüße 😀.txt"
	pathE    = "43feddb25776a343c69835c7e79dc2c7f59598a6/Xq3nZ7pL0aR5tY8uW2eK9mB4vC6xD1fG3hJ5kL7n/très_cool.jpg"
	pathV1b  = "6f1c2a9e-2d7b-4f61-9a0e-3b5c7d9e1f20/a?b#c%d&e=f+g.png"

	macV1a  = "c39d222da411ed06b56ca9c8fe808cc685b70be81ed99b9533afe54271f8240e"
	macV2a  = "04ce7d7836645ff8416a359b0dd14841178db87a02934c48f190809d3ad0744f"
	macV2b  = "fa615f9ff7a5e6a4ad9f046ec2165f581f1abcd9498307d7994766aa8c03fbe6"
	macV2c  = "dbced4a06f5912f7a3be4da7a79cf3bf3da4c06acf8d5df092c52434c224f9e3"
	macV2d  = "9a3c9499fedae928a36546fef23440aae05f226501bfbc9c96336a191ba0bf90"
	macV2e  = "02c1aeee6bab0b0ee68a76cf63c765b34f868e5d57907c7878d74cc39fd3b9c4"
	macV2eG = "ed55fa8f95ecdb43f996d540b4770b43c2600c78897ed2c7f7122732d6830ae7"
	macV1b  = "4f7c4c648911b0bbfac0cf43dadb60df148f4b0aab1669fd7bc9a98d80f95bde"
	macV1c  = "e6df55a04516617d6a86ad6ca23879819591085a1a8c0041f4da06824f5d2db7"
	macV2f  = "a19d27add075aa60035e27c05e794f13079ba48c508852b3d7160a6bec0f85ab"
	macEa   = "f3a8e2863f994836c6f2106f9c8d67341d9619ff30c1ba50d57ec761d536f204"
	macH3   = "f9121861c6a08a9695d29606c57bf2fd0080947914b7c6f99254aad22fb8d280"
	// HMAC File Server's weakened forms, which must not verify.
	macHvPrefix = "acc818c72633f3b8fcf7b31e4d37a89e974693476187c7481bf3ff53079a9e90"
	macHvSimple = "30d7c1f19f738237b5e56e7ff5c37f37b94cc090b7e02c7acccbeaa8e0bbdbf2"

	expiresH3 = 1795000000

	// jwtBrief: slot Xk3vT9qLmN2pR7sW4yZ8aB1c, iat 1795000000, exp 1795000300,
	// sub alice@example.org, filesize 123456, filetype image/jpeg, expires 1795604800.
	jwtBrief  = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzbG90IjoiWGszdlQ5cUxtTjJwUjdzVzR5WjhhQjFjIiwiaWF0IjoxNzk1MDAwMDAwLCJleHAiOjE3OTUwMDAzMDAsInN1YiI6ImFsaWNlQGV4YW1wbGUub3JnIiwiZmlsZW5hbWUiOiJob2xpZGF5IHBob3RvLmpwZyIsImZpbGVzaXplIjoxMjM0NTYsImZpbGV0eXBlIjoiaW1hZ2UvanBlZyIsImV4cGlyZXMiOjE3OTU2MDQ4MDB9.mOhMgUURuV9KZ9dmjVZb5UMGyvOITcT9cKs2tkq2D2o"
	slotBrief = "Xk3vT9qLmN2pR7sW4yZ8aB1c"
	// jwtJa and jwtJaLua: J-a, the same claims in two key orders (the second as Prosody's Lua tables emit them).
	jwtJa    = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJyb21lb0Btb250YWd1ZS50bGQiLCJzbG90IjoiUlZiS0FnV1BjclVZQW9kaiIsImlhdCI6MTc5NTAwMDAwMCwiZXhwIjoxNzk1MDAwMzAwLCJleHBpcmVzIjoxNzk1NjA0ODAwLCJmaWxlbmFtZSI6ImhvbGlkYXkgcGhvdG8uanBnIiwiZmlsZXNpemUiOjEyMzQ1NiwiZmlsZXR5cGUiOiJpbWFnZS9qcGVnIn0.naxWPHUSfnHDawCYsV_iqyP6HqbsxKnSayE4ySHzH_Y"
	jwtJaLua = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE3OTUwMDAzMDAsImZpbGVuYW1lIjoiaG9saWRheSBwaG90by5qcGciLCJzbG90IjoiUlZiS0FnV1BjclVZQW9kaiIsImZpbGV0eXBlIjoiaW1hZ2UvanBlZyIsImlhdCI6MTc5NTAwMDAwMCwiZXhwaXJlcyI6MTc5NTYwNDgwMCwiZmlsZXNpemUiOjEyMzQ1Niwic3ViIjoicm9tZW9AbW9udGFndWUudGxkIn0.b_KUUmq-YYwn3ZEZLL205Q0VeePJGEPxLKiWXUrmr6A"
	slotJa   = "RVbKAgWPcrUYAodj"
	// jwtCaptured was issued by a running Prosody 0.12.3 (mod_http_file_share) for
	// https://upload.example.org/share/mhXw4k_TxautAx72tSfsAEwq/holiday%20photo.jpg.
	jwtCaptured = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE3OTUzNzg2NTEsInN1YiI6InRlc3RlckBsb2NhbGhvc3QiLCJmaWxlc2l6ZSI6MTIzNDU2LCJpYXQiOjE3OTUzNzgzNTEsInNsb3QiOiJtaFh3NGtfVHhhdXRBeDcydFNmc0FFd3EiLCJleHBpcmVzIjoxNzk1OTgzMTUxLCJmaWxldHlwZSI6ImltYWdlL2pwZWciLCJmaWxlbmFtZSI6ImhvbGlkYXkgcGhvdG8uanBnIn0.JI4-3cv_h3eOlKgpScAdgm0AgpB2UzSoR51c4fjdwpM"

	// now0 is a time at which no test slot has expired.
	now0 = 1795000000
)

func strp(s string) *string { return &s }

func clockAt(unix int64) func() time.Time {
	return func() time.Time { return time.Unix(unix, 0) }
}

func newVerifier(t testing.TB, now int64, secrets ...string) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(secrets, auth.WithClock(clockAt(now)))
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// q builds a query from name, value pairs.
func q(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

// macHex is an independent HMAC-SHA256 for building test inputs.
func macHex(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// makeJWT builds a token by hand: any header, any payload, an HMAC with any hash.
func makeJWT(header, payload, secret string, h func() hash.Hash) string {
	input := b64(header) + "." + b64(payload)
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

const hs256Header = `{"alg":"HS256","typ":"JWT"}`

func bearer(token string) string { return "Bearer " + token }

// slotFromURL builds the request the gateway would make of a slot URL under base.
func slotFromURL(t *testing.T, raw, base string, size int64, ctype *string) auth.SlotRequest {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	p, ok := strings.CutPrefix(u.Path, base)
	if !ok {
		t.Fatalf("%q is not under %q", u.Path, base)
	}
	return auth.SlotRequest{Path: p, URLPath: u.Path, Query: u.Query(), Size: size, ContentType: ctype}
}

func checkSlot(t *testing.T, got, want auth.Slot, sig string) {
	t.Helper()
	if got.Protocol != want.Protocol || got.Path != want.Path || got.Size != want.Size || got.Type != want.Type || got.Subject != want.Subject {
		t.Errorf("slot = {%s %q size %d type %q sub %q}, want {%s %q size %d type %q sub %q}",
			got.Protocol, got.Path, got.Size, got.Type, got.Subject, want.Protocol, want.Path, want.Size, want.Type, want.Subject)
	}
	if !got.NotAfter.Equal(want.NotAfter) {
		t.Errorf("NotAfter = %v, want %v", got.NotAfter, want.NotAfter)
	}
	if !got.FileExpires.Equal(want.FileExpires) {
		t.Errorf("FileExpires = %v, want %v", got.FileExpires, want.FileExpires)
	}
	if sig != "" && got.SignatureHash != sha256.Sum256([]byte(sig)) {
		t.Errorf("SignatureHash is not SHA-256 of the signature as received")
	}
}

func TestVerifyVectors(t *testing.T) {
	tests := []struct {
		name   string
		secret string
		now    int64
		req    auth.SlotRequest
		sig    string
		want   auth.Slot
	}{
		{
			name: "V1-a", req: auth.SlotRequest{Path: pathA, Query: q("v", macV1a), Size: sizeA}, sig: macV1a,
			want: auth.Slot{Protocol: auth.ProtoV1, Path: pathA, Size: sizeA},
		},
		{
			name: "V1-a upper-case hex", req: auth.SlotRequest{Path: pathA, Query: q("v", strings.ToUpper(macV1a)), Size: sizeA}, sig: strings.ToUpper(macV1a),
			want: auth.Slot{Protocol: auth.ProtoV1, Path: pathA, Size: sizeA},
		},
		{
			name: "V2-a", req: auth.SlotRequest{Path: pathA, Query: q("v2", macV2a), Size: sizeA, ContentType: strp("image/jpeg")}, sig: macV2a,
			want: auth.Slot{Protocol: auth.ProtoV2, Path: pathA, Size: sizeA, Type: "image/jpeg"},
		},
		{
			name: "T-a token is v2 under another name", req: auth.SlotRequest{Path: pathA, Query: q("token", macV2a), Size: sizeA, ContentType: strp("image/jpeg")}, sig: macV2a,
			want: auth.Slot{Protocol: auth.ProtoToken, Path: pathA, Size: sizeA, Type: "image/jpeg"},
		},
		{
			name: "V2-b UTF-8 path, size 0", req: auth.SlotRequest{Path: pathB, Query: q("v2", macV2b), Size: 0, ContentType: strp("text/plain; charset=utf-8")}, sig: macV2b,
			want: auth.Slot{Protocol: auth.ProtoV2, Path: pathB, Size: 0, Type: "text/plain; charset=utf-8"},
		},
		{
			name: "V2-c absent type signs octet-stream", req: auth.SlotRequest{Path: pathA, Query: q("v2", macV2c), Size: sizeA}, sig: macV2c,
			want: auth.Slot{Protocol: auth.ProtoV2, Path: pathA, Size: sizeA, Type: auth.DefaultContentType},
		},
		{
			name: "V2-d empty type is signed verbatim", req: auth.SlotRequest{Path: pathA, Query: q("v2", macV2d), Size: sizeA, ContentType: strp("")}, sig: macV2d,
			want: auth.Slot{Protocol: auth.ProtoV2, Path: pathA, Size: sizeA, Type: ""},
		},
		{
			name: "V2-e client type", req: auth.SlotRequest{Path: "d1f0c3a2/notes.txt", Query: q("v2", macV2e), Size: 5, ContentType: strp("text/plain")}, sig: macV2e,
			want: auth.Slot{Protocol: auth.ProtoV2, Path: "d1f0c3a2/notes.txt", Size: 5, Type: "text/plain"},
		},
		{
			name: "V2-e Go's type for .txt", req: auth.SlotRequest{Path: "d1f0c3a2/notes.txt", Query: q("v2", macV2eG), Size: 5, ContentType: strp("text/plain; charset=utf-8")}, sig: macV2eG,
			want: auth.Slot{Protocol: auth.ProtoV2, Path: "d1f0c3a2/notes.txt", Size: 5, Type: "text/plain; charset=utf-8"},
		},
		{
			name: "V1-b URL specials in the name", req: auth.SlotRequest{Path: pathV1b, Query: q("v", macV1b), Size: 42}, sig: macV1b,
			want: auth.Slot{Protocol: auth.ProtoV1, Path: pathV1b, Size: 42},
		},
		{
			name: "V1-c README inputs", secret: readmeSecret, req: auth.SlotRequest{Path: "foo/bar.jpg", Query: q("v", macV1c), Size: 1048576}, sig: macV1c,
			want: auth.Slot{Protocol: auth.ProtoV1, Path: "foo/bar.jpg", Size: 1048576},
		},
		{
			name: "V2-f README inputs", secret: readmeSecret, req: auth.SlotRequest{Path: "foo/bar.jpg", Query: q("v2", macV2f), Size: 1048576, ContentType: strp("image/jpeg")}, sig: macV2f,
			want: auth.Slot{Protocol: auth.ProtoV2, Path: "foo/bar.jpg", Size: 1048576, Type: "image/jpeg"},
		},
		{
			name: "E-a ejabberd three segments", req: auth.SlotRequest{Path: pathE, Query: q("v", macEa), Size: 23456}, sig: macEa,
			want: auth.Slot{Protocol: auth.ProtoV1, Path: pathE, Size: 23456},
		},
		{
			name: "H-v3", now: expiresH3 - 10,
			req: auth.SlotRequest{Path: pathA, URLPath: urlPathA, Query: q("v3", macH3, "expires", "1795000000"), Size: sizeA}, sig: macH3,
			want: auth.Slot{Protocol: auth.ProtoV3, Path: pathA, Size: -1, NotAfter: time.Unix(expiresH3, 0)},
		},
		{
			name: "H-v3 within leeway", now: expiresH3 + 60,
			req: auth.SlotRequest{Path: pathA, URLPath: urlPathA, Query: q("v3", macH3, "expires", "1795000000"), Size: -1}, sig: macH3,
			want: auth.Slot{Protocol: auth.ProtoV3, Path: pathA, Size: -1, NotAfter: time.Unix(expiresH3, 0)},
		},
		{
			name: "JWT", now: 1795000299,
			req: auth.SlotRequest{Path: slotBrief + "/holiday photo.jpg", Authorization: bearer(jwtBrief), Size: sizeA}, sig: jwtBrief,
			want: auth.Slot{Protocol: auth.ProtoJWT, Path: slotBrief + "/holiday photo.jpg", Size: sizeA, Type: "image/jpeg",
				NotAfter: time.Unix(1795000300, 0), FileExpires: time.Unix(1795604800, 0), Subject: "alice@example.org"},
		},
		{
			name: "JWT unknown size (deferred length)", now: 1795000360,
			req: auth.SlotRequest{Path: slotBrief + "/holiday photo.jpg", Authorization: bearer(jwtBrief), Size: -1}, sig: jwtBrief,
			want: auth.Slot{Protocol: auth.ProtoJWT, Path: slotBrief + "/holiday photo.jpg", Size: sizeA, Type: "image/jpeg",
				NotAfter: time.Unix(1795000300, 0), FileExpires: time.Unix(1795604800, 0), Subject: "alice@example.org"},
		},
		{
			name: "J-a sorted keys", now: now0,
			req: auth.SlotRequest{Path: slotJa + "/holiday photo.jpg", Authorization: bearer(jwtJa), Size: sizeA}, sig: jwtJa,
			want: auth.Slot{Protocol: auth.ProtoJWT, Path: slotJa + "/holiday photo.jpg", Size: sizeA, Type: "image/jpeg",
				NotAfter: time.Unix(1795000300, 0), FileExpires: time.Unix(1795604800, 0), Subject: "romeo@montague.tld"},
		},
		{
			name: "J-a Prosody key order, lower-case scheme", now: now0,
			req: auth.SlotRequest{Path: slotJa + "/holiday photo.jpg", Authorization: "bearer  " + jwtJaLua, Size: sizeA}, sig: jwtJaLua,
			want: auth.Slot{Protocol: auth.ProtoJWT, Path: slotJa + "/holiday photo.jpg", Size: sizeA, Type: "image/jpeg",
				NotAfter: time.Unix(1795000300, 0), FileExpires: time.Unix(1795604800, 0), Subject: "romeo@montague.tld"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := tt.secret
			if secret == "" {
				secret = testSecret
			}
			now := tt.now
			if now == 0 {
				now = now0
			}
			got, err := newVerifier(t, now, secret).Verify(tt.req)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			checkSlot(t, got, tt.want, tt.sig)

			// Under a wrong secret the same request must not verify.
			_, err = newVerifier(t, now, "wrong-secret").Verify(tt.req)
			if !errors.Is(err, auth.ErrBadSignature) {
				t.Errorf("Verify under a wrong secret: %v, want ErrBadSignature", err)
			}
		})
	}
}

// TestVerifyCapturedProsodySlots verifies URLs that a running Prosody 0.12.3
// with prosody-modules issued, decoded the way the gateway decodes them, and
// checks that the still-encoded path does not verify.
func TestVerifyCapturedProsodySlots(t *testing.T) {
	tests := []struct {
		url   string
		size  int64
		ctype *string
	}{
		{"https://upload.example.org/upload/90c2f946-9a8c-4b44-aa9b-d75f312b8799/holiday%20photo.jpg?v=c81641a0d5cceda78d62337b415bb3b32eeeed9b8687a46316487658914fd95a", sizeA, nil},
		{"https://upload.example.org/upload/88a7e8db-8a46-4598-8540-d3de6d2c58f6/Gr%c3%bc%c3%9fe%20%f0%9f%98%80.txt?v=0b46832db8513f3f75e60d245064fbc8597a17acb6424e4f62b1f80b6e505131", 0, nil},
		{"https://upload.example.org/upload/8a4c0c53-6af8-4219-9cda-27b90c647039/holiday%20photo.jpg?v2=0c8f787d49a30fb476a22a6b557115379d71fa75557f3fac198c532bbce2ddd2", sizeA, strp("image/jpeg")},
		{"https://upload.example.org/upload/3c979460-72dd-4b54-867f-04bcea607e31/Gr%c3%bc%c3%9fe%20%f0%9f%98%80.txt?v2=829d9095f6109f5becc97b9d2535869ba4a529550d71eb291463f645849fbeca", 0, strp("text/plain; charset=utf-8")},
		{"https://upload.example.org/upload/6bf50282-a3ce-4acb-958c-031c88ba54ac/noct.bin?v2=9a7298e5dc2104529843675832beb65cfdaf23349bf74fd56c9e8cd835c35906", 10, nil},
		{"https://upload.example.org/upload/33a5341b-9cf1-4cad-9df1-aa66fbf7a707/holiday%20photo.jpg?v2=043f38bb4e57b149568788511d28313f6fcc90817ce3b18016b5cdb3d9370211", sizeA, strp("image/jpeg")},
		{"https://upload.example.org/upload/6f1c2a9e-2d7b-4f61-9a0e-3b5c7d9e1f20/a%3fb%23c%25d%26e%3df%2bg.png?v=" + macV1b, 42, nil},
	}
	v := newVerifier(t, now0, testSecret)
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			req := slotFromURL(t, tt.url, "/upload/", tt.size, tt.ctype)
			if _, err := v.Verify(req); err != nil {
				t.Fatalf("Verify decoded path %q: %v", req.Path, err)
			}
			u, _ := url.Parse(tt.url)
			raw := strings.TrimPrefix(u.EscapedPath(), "/upload/")
			if raw == req.Path {
				return // nothing was encoded
			}
			req.Path = raw
			if _, err := v.Verify(req); !errors.Is(err, auth.ErrBadSignature) {
				t.Errorf("Verify raw path %q: %v, want ErrBadSignature", raw, err)
			}
		})
	}

	t.Run("mod_http_file_share Bearer", func(t *testing.T) {
		req := slotFromURL(t, "https://upload.example.org/share/mhXw4k_TxautAx72tSfsAEwq/holiday%20photo.jpg", "/share/", sizeA, strp("image/jpeg"))
		req.Authorization = bearer(jwtCaptured)
		got, err := newVerifier(t, 1795378400, testSecret).Verify(req)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		checkSlot(t, got, auth.Slot{Protocol: auth.ProtoJWT, Path: "mhXw4k_TxautAx72tSfsAEwq/holiday photo.jpg", Size: sizeA,
			Type: "image/jpeg", NotAfter: time.Unix(1795378651, 0), FileExpires: time.Unix(1795983151, 0), Subject: "tester@localhost"}, jwtCaptured)
	})
}

// TestVerifyRejects covers every way a slot must fail, with the error the gateway maps to a status.
func TestVerifyRejects(t *testing.T) {
	v2Req := func(sig string) auth.SlotRequest {
		return auth.SlotRequest{Path: pathA, Query: q("v2", sig), Size: sizeA, ContentType: strp("image/jpeg")}
	}
	v3Req := func(kv ...string) auth.SlotRequest {
		return auth.SlotRequest{Path: pathA, URLPath: urlPathA, Query: q(kv...), Size: sizeA}
	}
	jwtReq := func(authz string) auth.SlotRequest {
		return auth.SlotRequest{Path: slotBrief + "/holiday photo.jpg", Authorization: authz, Size: sizeA}
	}
	// Claims of jwtBrief, for tokens built by hand.
	payload := `{"slot":"` + slotBrief + `","iat":1795000000,"exp":1795000300,"sub":"alice@example.org","filename":"holiday photo.jpg","filesize":123456,"filetype":"image/jpeg","expires":1795604800}`
	flip := func(s string) string { // change the last character
		last := s[len(s)-1]
		repl := byte('0')
		if last == '0' {
			repl = '1'
		}
		return s[:len(s)-1] + string(repl)
	}

	tests := []struct {
		name      string
		now       int64
		req       auth.SlotRequest
		wantErr   error
		wantProto auth.Protocol
	}{
		// Nothing to check.
		{name: "no signature", req: auth.SlotRequest{Path: pathA, Size: sizeA}, wantErr: auth.ErrNoSignature},
		{name: "expires alone is no signature", req: v3Req("expires", "1795000000"), wantErr: auth.ErrNoSignature},
		{name: "unrelated query", req: auth.SlotRequest{Path: pathA, Query: q("x", macV1a), Size: sizeA}, wantErr: auth.ErrNoSignature},

		// Tampering with each signed field.
		{name: "v1 other path", req: auth.SlotRequest{Path: pathA + "x", Query: q("v", macV1a), Size: sizeA}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV1},
		{name: "v1 other size", req: auth.SlotRequest{Path: pathA, Query: q("v", macV1a), Size: sizeA + 1}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV1},
		{name: "v1 size unknown", req: auth.SlotRequest{Path: pathA, Query: q("v", macV1a), Size: -1}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV1},
		{name: "v1 other signature", req: auth.SlotRequest{Path: pathA, Query: q("v", flip(macV1a)), Size: sizeA}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV1},
		{name: "v2 other path", req: auth.SlotRequest{Path: "x" + pathA, Query: q("v2", macV2a), Size: sizeA, ContentType: strp("image/jpeg")}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV2},
		{name: "v2 other size", req: auth.SlotRequest{Path: pathA, Query: q("v2", macV2a), Size: 0, ContentType: strp("image/jpeg")}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV2},
		{name: "v2 type changed", req: auth.SlotRequest{Path: pathA, Query: q("v2", macV2a), Size: sizeA, ContentType: strp("image/png")}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV2},
		{name: "v2 type absent", req: auth.SlotRequest{Path: pathA, Query: q("v2", macV2a), Size: sizeA}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV2},
		{name: "v2 empty type is not absent", req: auth.SlotRequest{Path: pathA, Query: q("v2", macV2c), Size: sizeA, ContentType: strp("")}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV2},
		{name: "v2 size unknown", req: auth.SlotRequest{Path: pathA, Query: q("v2", macV2a), Size: -1, ContentType: strp("image/jpeg")}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV2},
		{name: "v2 other signature", req: v2Req(flip(macV2a)), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV2},
		{name: "token other type", req: auth.SlotRequest{Path: pathA, Query: q("token", macV2a), Size: sizeA, ContentType: strp("image/gif")}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoToken},
		{name: "v3 other URL path", now: expiresH3, req: auth.SlotRequest{Path: pathA, URLPath: "/files/" + pathA, Query: q("v3", macH3, "expires", "1795000000"), Size: sizeA}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV3},
		{name: "v3 other expires", now: expiresH3, req: v3Req("v3", macH3, "expires", "1795000001"), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV3},
		{name: "v3 expires with a leading zero", now: expiresH3, req: v3Req("v3", macH3, "expires", "01795000000"), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV3},
		{name: "v3 other signature", now: expiresH3, req: v3Req("v3", flip(macH3), "expires", "1795000000"), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV3},
		{name: "jwt tampered payload", req: jwtReq(bearer(strings.Replace(jwtBrief, ".eyJzbG90", ".eyJzbG91", 1))), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoJWT},
		{name: "jwt other signature", req: jwtReq(bearer(jwtBrief[:len(jwtBrief)-2] + "AA")), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoJWT},
		{name: "jwt signed with another secret", req: jwtReq(bearer(makeJWT(hs256Header, payload, "wrong-secret", sha256.New))), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoJWT},
		{name: "jwt expired and badly signed", now: 1795009999, req: jwtReq(bearer(makeJWT(hs256Header, payload, "wrong-secret", sha256.New))), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoJWT},

		// HMAC File Server's fallbacks: MACs that leave out size, type or expiry.
		{name: "H-v-simple path-only MAC", req: auth.SlotRequest{Path: pathA, Query: q("v", macHvSimple), Size: sizeA}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV1},
		{name: "H-v-prefix base included", req: auth.SlotRequest{Path: pathA, Query: q("v", macHvPrefix), Size: sizeA}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV1},
		{name: "v2 MAC without type", req: v2Req(macHex(testSecret, pathA+"\x00"+strconv.Itoa(sizeA))), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV2},
		{name: "v2 MAC of path only", req: v2Req(macHex(testSecret, pathA)), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV2},
		{name: "v1 MAC under v2", req: v2Req(macV1a), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV2},
		{name: "v3 MAC without expiry", now: expiresH3, req: v3Req("v3", macHex(testSecret, "PUT\n"+urlPathA), "expires", "1795000000"), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV3},
		{name: "v3 MAC with query appended", now: expiresH3, req: v3Req("v3", macHex(testSecret, "PUT\n1795000000\n"+urlPathA+"?expires=1795000000"), "expires", "1795000000"), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV3},
		{name: "v3 MAC over another method", now: expiresH3, req: v3Req("v3", macHex(testSecret, "POST\n1795000000\n"+urlPathA), "expires", "1795000000"), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV3},

		// Precedence: the highest version present is the only one tried.
		{name: "bad v2 beside a good v", req: auth.SlotRequest{Path: pathA, Query: q("v", macV1a, "v2", flip(macV2a)), Size: sizeA, ContentType: strp("image/jpeg")}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV2},
		{name: "bad token beside a good v", req: auth.SlotRequest{Path: pathA, Query: q("v", macV1a, "token", flip(macV2a)), Size: sizeA, ContentType: strp("image/jpeg")}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoToken},
		{name: "bad v2 beside a good token", req: auth.SlotRequest{Path: pathA, Query: q("token", macV2a, "v2", flip(macV2a)), Size: sizeA, ContentType: strp("image/jpeg")}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV2},
		{name: "bad v3 beside a good v2", now: expiresH3, req: auth.SlotRequest{Path: pathA, URLPath: urlPathA, Query: q("v2", macV2a, "v3", flip(macH3), "expires", "1795000000"), Size: sizeA, ContentType: strp("image/jpeg")}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV3},
		{name: "malformed v2 beside a good v", req: auth.SlotRequest{Path: pathA, Query: q("v", macV1a, "v2", "zz"), Size: sizeA}, wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoV2},
		{name: "query wins over a good bearer", req: auth.SlotRequest{Path: slotBrief + "/holiday photo.jpg", Query: q("v", flip(macV1a)), Authorization: bearer(jwtBrief), Size: sizeA}, wantErr: auth.ErrBadSignature, wantProto: auth.ProtoV1},

		// Malformed signatures.
		{name: "empty v", req: auth.SlotRequest{Path: pathA, Query: q("v", ""), Size: sizeA}, wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoV1},
		{name: "short v", req: auth.SlotRequest{Path: pathA, Query: q("v", macV1a[:62]), Size: sizeA}, wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoV1},
		{name: "long v", req: auth.SlotRequest{Path: pathA, Query: q("v", macV1a+"00"), Size: sizeA}, wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoV1},
		{name: "non-hex v", req: auth.SlotRequest{Path: pathA, Query: q("v", "g"+macV1a[1:]), Size: sizeA}, wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoV1},
		{name: "repeated v2", req: auth.SlotRequest{Path: pathA, Query: q("v2", macV2a, "v2", macV2a), Size: sizeA, ContentType: strp("image/jpeg")}, wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoV2},
		{name: "v3 without expires", req: v3Req("v3", macH3), wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoV3},
		{name: "v3 empty expires", req: v3Req("v3", macH3, "expires", ""), wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoV3},
		{name: "v3 expires not a number", req: v3Req("v3", macH3, "expires", "soon"), wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoV3},
		{name: "v3 expires negative", req: v3Req("v3", macH3, "expires", "-1795000000"), wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoV3},
		{name: "v3 expires with sign", req: v3Req("v3", macH3, "expires", "+1795000000"), wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoV3},
		{name: "v3 expires fractional", req: v3Req("v3", macH3, "expires", "1795000000.5"), wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoV3},
		{name: "v3 expires huge", req: v3Req("v3", macH3, "expires", "99999999999999999999"), wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoV3},
		{name: "v3 repeated expires", req: v3Req("v3", macH3, "expires", "1795000000", "expires", "1795000000"), wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoV3},
		{name: "jwt undecodable", req: jwtReq(bearer("eyJhbGciOiJIUzI1NiJ9.e.abc")), wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoJWT},
		{name: "jwt payload not JSON", req: jwtReq(bearer(makeJWT(hs256Header, "not json", testSecret, sha256.New))), wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoJWT},
		{name: "jwt filesize missing", req: jwtReq(bearer(makeJWT(hs256Header, withoutClaim(payload, "filesize"), testSecret, sha256.New))), wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoJWT},
		{name: "jwt filesize negative", req: jwtReq(bearer(makeJWT(hs256Header, strings.Replace(payload, `"filesize":123456`, `"filesize":-1`, 1), testSecret, sha256.New))), wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoJWT},
		{name: "jwt exp missing", req: jwtReq(bearer(makeJWT(hs256Header, withoutClaim(payload, "exp"), testSecret, sha256.New))), wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoJWT},
		{name: "jwt exp null", req: jwtReq(bearer(makeJWT(hs256Header, strings.Replace(payload, `"exp":1795000300`, `"exp":null`, 1), testSecret, sha256.New))), wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoJWT},
		{name: "jwt filename missing", req: jwtReq(bearer(makeJWT(hs256Header, withoutClaim(payload, "filename"), testSecret, sha256.New))), wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoJWT},
		{name: "jwt filename empty", req: jwtReq(bearer(makeJWT(hs256Header, strings.Replace(payload, `"filename":"holiday photo.jpg"`, `"filename":""`, 1), testSecret, sha256.New))), wantErr: auth.ErrMalformedSignature, wantProto: auth.ProtoJWT},

		// Authorization present but no Bearer JWT.
		{name: "basic auth", req: jwtReq("Basic dXNlcjpwYXNz"), wantErr: auth.ErrBearerRequired, wantProto: auth.ProtoJWT},
		{name: "bearer without token", req: jwtReq("Bearer"), wantErr: auth.ErrBearerRequired, wantProto: auth.ProtoJWT},
		{name: "bearer with empty token", req: jwtReq("Bearer "), wantErr: auth.ErrBearerRequired, wantProto: auth.ProtoJWT},
		{name: "blank header", req: jwtReq("   "), wantErr: auth.ErrBearerRequired, wantProto: auth.ProtoJWT},
		{name: "bearer two segments", req: jwtReq("Bearer abc.def"), wantErr: auth.ErrBearerRequired, wantProto: auth.ProtoJWT},
		{name: "bearer four segments", req: jwtReq(bearer(jwtBrief + ".x")), wantErr: auth.ErrBearerRequired, wantProto: auth.ProtoJWT},
		{name: "bearer hex MAC", req: jwtReq(bearer(macV1a)), wantErr: auth.ErrBearerRequired, wantProto: auth.ProtoJWT},
		{name: "bearer padded base64", req: jwtReq("Bearer abc=.def.ghi"), wantErr: auth.ErrBearerRequired, wantProto: auth.ProtoJWT},
		{name: "bearer empty header segment", req: jwtReq("Bearer .def.ghi"), wantErr: auth.ErrBearerRequired, wantProto: auth.ProtoJWT},
		{name: "token without scheme", req: jwtReq(jwtBrief), wantErr: auth.ErrBearerRequired, wantProto: auth.ProtoJWT},

		// Algorithms other than HS256.
		{name: "alg none", req: jwtReq(bearer(b64(`{"alg":"none","typ":"JWT"}`) + "." + b64(payload) + ".")), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoJWT},
		{name: "alg HS512", req: jwtReq(bearer(makeJWT(`{"alg":"HS512","typ":"JWT"}`, payload, testSecret, sha512.New))), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoJWT},
		{name: "alg RS256 with an HMAC", req: jwtReq(bearer(makeJWT(`{"alg":"RS256","typ":"JWT"}`, payload, testSecret, sha256.New))), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoJWT},
		{name: "alg hs256 lower case", req: jwtReq(bearer(makeJWT(`{"alg":"hs256","typ":"JWT"}`, payload, testSecret, sha256.New))), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoJWT},
		{name: "alg missing", req: jwtReq(bearer(makeJWT(`{"typ":"JWT"}`, payload, testSecret, sha256.New))), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoJWT},

		// Claims that do not fit the request.
		{name: "jwt for another slot", req: auth.SlotRequest{Path: "RVbKAgWPcrUYAodj/holiday photo.jpg", Authorization: bearer(jwtBrief), Size: sizeA}, wantErr: auth.ErrSlotMismatch, wantProto: auth.ProtoJWT},
		{name: "jwt slot is a prefix of the segment", req: auth.SlotRequest{Path: slotBrief + "x/holiday photo.jpg", Authorization: bearer(jwtBrief), Size: sizeA}, wantErr: auth.ErrSlotMismatch, wantProto: auth.ProtoJWT},
		{name: "jwt slot in a later segment", req: auth.SlotRequest{Path: "x/" + slotBrief + "/holiday photo.jpg", Authorization: bearer(jwtBrief), Size: sizeA}, wantErr: auth.ErrSlotMismatch, wantProto: auth.ProtoJWT},
		{name: "jwt without slot claim", req: jwtReq(bearer(makeJWT(hs256Header, withoutClaim(payload, "slot"), testSecret, sha256.New))), wantErr: auth.ErrSlotMismatch, wantProto: auth.ProtoJWT},
		{name: "jwt for another file name", req: auth.SlotRequest{Path: slotBrief + "/holiday photo.png", Authorization: bearer(jwtBrief), Size: sizeA}, wantErr: auth.ErrSlotMismatch, wantProto: auth.ProtoJWT},
		{name: "jwt file name deeper under the slot", req: auth.SlotRequest{Path: slotBrief + "/x/holiday photo.jpg", Authorization: bearer(jwtBrief), Size: sizeA}, wantErr: auth.ErrSlotMismatch, wantProto: auth.ProtoJWT},
		{name: "jwt filename with a slash", req: auth.SlotRequest{Path: slotBrief + "/x/holiday photo.jpg", Size: sizeA,
			Authorization: bearer(makeJWT(hs256Header, strings.Replace(payload, `"filename":"holiday photo.jpg"`, `"filename":"x/holiday photo.jpg"`, 1), testSecret, sha256.New))},
			wantErr: auth.ErrSlotMismatch, wantProto: auth.ProtoJWT},

		// Not valid yet: nbf beyond the fixed leeway of two seconds.
		{name: "jwt nbf three seconds ahead", req: jwtReq(bearer(makeJWT(hs256Header, withClaim(payload, `"nbf":1795000003`), testSecret, sha256.New))), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoJWT},
		{name: "jwt nbf an hour ahead", req: jwtReq(bearer(makeJWT(hs256Header, withClaim(payload, `"nbf":1795003600`), testSecret, sha256.New))), wantErr: auth.ErrBadSignature, wantProto: auth.ProtoJWT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now == 0 {
				now = now0
			}
			got, err := newVerifier(t, now, testSecret).Verify(tt.req)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify: %v, want %v", err, tt.wantErr)
			}
			if errors.Is(err, auth.ErrSlotExpired) {
				t.Errorf("Verify: %v also matches ErrSlotExpired", err)
			}
			want := auth.Slot{Protocol: tt.wantProto}
			if got != want {
				t.Errorf("Verify returned slot %+v with the error, want only the protocol %q", got, tt.wantProto)
			}
			checkNoSecretIn(t, err, tt.req)
		})
	}
}

// withoutClaim removes one claim from a flat JSON payload of string and number claims.
func withoutClaim(payload, name string) string {
	start := strings.Index(payload, `"`+name+`":`)
	if start < 0 {
		panic("withoutClaim: no claim " + name)
	}
	end := start + strings.IndexAny(payload[start:], ",}")
	if payload[end] == ',' {
		return payload[:start] + payload[end+1:]
	}
	return strings.TrimSuffix(payload[:start], ",") + payload[end:]
}

// withClaim adds a claim (`"name":value`) at the end of a JSON payload.
func withClaim(payload, claim string) string {
	return strings.TrimSuffix(payload, "}") + "," + claim + "}"
}

// TestVerifyJWTNotBefore: a token whose nbf is at most two seconds ahead of
// the verifier's clock, or past, is accepted.
func TestVerifyJWTNotBefore(t *testing.T) {
	payload := `{"slot":"` + slotBrief + `","iat":1795000000,"exp":1795000300,"sub":"alice@example.org","filename":"holiday photo.jpg","filesize":123456,"filetype":"image/jpeg"}`
	for _, nbf := range []int64{now0 - 3600, now0, now0 + 1, now0 + 2} {
		tok := makeJWT(hs256Header, withClaim(payload, `"nbf":`+strconv.FormatInt(nbf, 10)), testSecret, sha256.New)
		req := auth.SlotRequest{Path: slotBrief + "/holiday photo.jpg", Authorization: bearer(tok), Size: sizeA}
		if _, err := newVerifier(t, now0, testSecret).Verify(req); err != nil {
			t.Errorf("nbf %+d s: Verify: %v", nbf-now0, err)
		}
	}
}

// checkNoSecretIn fails if an error message shows the secret or the signature.
func checkNoSecretIn(t *testing.T, err error, req auth.SlotRequest) {
	t.Helper()
	msg := err.Error()
	leaks := []string{testSecret}
	for _, name := range []string{"v", "v2", "token", "v3"} {
		for _, s := range req.Query[name] {
			if len(s) > 4 {
				leaks = append(leaks, s)
			}
		}
	}
	if _, tok, ok := strings.Cut(req.Authorization, " "); ok && len(strings.TrimSpace(tok)) > 4 {
		leaks = append(leaks, strings.TrimSpace(tok))
	}
	for _, l := range leaks {
		if strings.Contains(msg, l) {
			t.Errorf("error message %q shows a secret or signature", msg)
		}
	}
}

func TestVerifyExpiry(t *testing.T) {
	v3 := auth.SlotRequest{Path: pathA, URLPath: urlPathA, Query: q("v3", macH3, "expires", "1795000000"), Size: sizeA}
	jwtPath := slotBrief + "/holiday photo.jpg"
	tests := []struct {
		name        string
		now         int64
		leeway      *time.Duration
		req         auth.SlotRequest
		wantExpired bool
		wantErr     error
	}{
		{name: "v3 before expiry", now: expiresH3 - 1, req: v3},
		{name: "v3 at expiry", now: expiresH3, req: v3},
		{name: "v3 at the end of the default leeway", now: expiresH3 + 60, req: v3},
		{name: "v3 beyond the default leeway", now: expiresH3 + 61, req: v3, wantExpired: true},
		{name: "v3 long expired", now: expiresH3 + 86400, req: v3, wantExpired: true},
		{name: "v3 no leeway", now: expiresH3 + 1, leeway: new(time.Duration(0)), req: v3, wantExpired: true},
		{name: "v3 wider leeway", now: expiresH3 + 600, leeway: new(10 * time.Minute), req: v3},
		{name: "v3 expired with a bad MAC", now: expiresH3 + 86400,
			req:     auth.SlotRequest{Path: pathA, URLPath: urlPathA, Query: q("v3", macHex("wrong", "PUT\n1795000000\n"+urlPathA), "expires", "1795000000"), Size: sizeA},
			wantErr: auth.ErrBadSignature},
		{name: "jwt before exp", now: 1795000000, req: auth.SlotRequest{Path: jwtPath, Authorization: bearer(jwtBrief), Size: sizeA}},
		{name: "jwt within leeway", now: 1795000360, req: auth.SlotRequest{Path: jwtPath, Authorization: bearer(jwtBrief), Size: sizeA}},
		{name: "jwt after exp", now: 1795000361, req: auth.SlotRequest{Path: jwtPath, Authorization: bearer(jwtBrief), Size: sizeA}, wantExpired: true},
		{name: "jwt no leeway", now: 1795000301, leeway: new(time.Duration(0)), req: auth.SlotRequest{Path: jwtPath, Authorization: bearer(jwtBrief), Size: sizeA}, wantExpired: true},
		{name: "jwt expired and another size: size wins", now: 1795009999, req: auth.SlotRequest{Path: jwtPath, Authorization: bearer(jwtBrief), Size: 1}, wantErr: auth.ErrSizeMismatch},
		{name: "jwt size mismatch", now: 1795000000, req: auth.SlotRequest{Path: jwtPath, Authorization: bearer(jwtBrief), Size: sizeA - 1}, wantErr: auth.ErrSizeMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := []auth.VerifierOption{auth.WithClock(clockAt(tt.now))}
			if tt.leeway != nil {
				opts = append(opts, auth.WithLeeway(*tt.leeway))
			}
			v, err := auth.NewVerifier([]string{testSecret}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.Verify(tt.req)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) || errors.Is(err, auth.ErrSlotExpired) {
					t.Fatalf("Verify: %v, want only %v", err, tt.wantErr)
				}
				if tt.wantErr == auth.ErrSizeMismatch && got.Size != sizeA {
					t.Errorf("size mismatch returned slot size %d, want the filled slot (size %d)", got.Size, sizeA)
				}
				return
			case tt.wantExpired:
				if !errors.Is(err, auth.ErrSlotExpired) {
					t.Fatalf("Verify: %v, want ErrSlotExpired", err)
				}
			case err != nil:
				t.Fatalf("Verify: %v", err)
			}
			// Expired or not, the slot is filled.
			if got.Path != tt.req.Path || got.NotAfter.IsZero() || got.SignatureHash == ([32]byte{}) {
				t.Errorf("slot not filled: %+v", got)
			}
		})
	}
}

func TestVerifySeveralSecrets(t *testing.T) {
	reqs := map[string]auth.SlotRequest{
		"v1":  {Path: pathA, Query: q("v", macV1a), Size: sizeA},
		"v2":  {Path: pathA, Query: q("v2", macV2a), Size: sizeA, ContentType: strp("image/jpeg")},
		"v3":  {Path: pathA, URLPath: urlPathA, Query: q("v3", macH3, "expires", "1795000000"), Size: sizeA},
		"jwt": {Path: slotBrief + "/holiday photo.jpg", Authorization: bearer(jwtBrief), Size: sizeA},
	}
	tests := []struct {
		name    string
		secrets []string
		wantOK  bool
	}{
		{"only secret", []string{testSecret}, true},
		{"first of two", []string{testSecret, "new-secret"}, true},
		{"second of two (retired, still verifying)", []string{"new-secret", testSecret}, true},
		{"last of three", []string{"a", "b", testSecret}, true},
		{"not configured", []string{"a", "b"}, false},
	}
	for _, tt := range tests {
		for name, req := range reqs {
			t.Run(tt.name+"/"+name, func(t *testing.T) {
				_, err := newVerifier(t, now0, tt.secrets...).Verify(req)
				if tt.wantOK && err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if !tt.wantOK && !errors.Is(err, auth.ErrBadSignature) {
					t.Fatalf("Verify: %v, want ErrBadSignature", err)
				}
			})
		}
	}
}

func TestNewVerifierRejects(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		opts    []auth.VerifierOption
	}{
		{"no secrets", nil, nil},
		{"empty list", []string{}, nil},
		{"empty secret", []string{""}, nil},
		{"empty second secret", []string{"a", ""}, nil},
		{"nil clock", []string{"a"}, []auth.VerifierOption{auth.WithClock(nil)}},
		{"negative leeway", []string{"a"}, []auth.VerifierOption{auth.WithLeeway(-time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := auth.NewVerifier(tt.secrets, tt.opts...)
			if err == nil || v != nil {
				t.Fatalf("NewVerifier = %v, %v; want an error", v, err)
			}
		})
	}
}

func TestSlotKey(t *testing.T) {
	tests := []struct{ path, want string }{
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	}
	for _, tt := range tests {
		if got := auth.SlotKey(tt.path); got != tt.want {
			t.Errorf("SlotKey(%q) = %s, want %s", tt.path, got, tt.want)
		}
	}
	if auth.SlotKey(pathA) == auth.SlotKey(pathA+" ") {
		t.Error("SlotKey does not depend on the whole path")
	}
}

// FuzzVerify checks that Verify never panics and that whatever it accepts
// carries a MAC that an independent computation confirms.
func FuzzVerify(f *testing.F) {
	jwtPath := slotBrief + "/holiday photo.jpg"
	f.Add(pathA, "", "v="+macV1a, "", int64(sizeA), "", false)
	f.Add(pathA, "", "v2="+macV2a, "", int64(sizeA), "image/jpeg", true)
	f.Add(pathA, "", "token="+macV2a, "", int64(sizeA), "image/jpeg", true)
	f.Add(pathA, "", "v2="+macV2c, "", int64(sizeA), "", false)
	f.Add(pathA, urlPathA, "v3="+macH3+"&expires=1795000000", "", int64(-1), "", false)
	f.Add(jwtPath, "", "", bearer(jwtBrief), int64(sizeA), "", false)
	f.Add(slotJa+"/x", "", "", bearer(jwtJaLua), int64(-1), "", false)
	f.Add(pathA, "", "v=&v2=zz&v3=", "Bearer a.b.c", int64(0), "", true)
	f.Add(pathA, "", "", "Bearer "+b64(`{"alg":"none"}`)+"."+b64(`{"slot":"4a8e1c2b-9f3d-4c1e-8a77-0d2f5e6b7c11","filesize":1}`)+".", int64(1), "", false)

	v := newVerifier(f, now0, testSecret)
	f.Fuzz(func(t *testing.T, path, urlPath, rawQuery, authorization string, size int64, ctype string, hasType bool) {
		query, _ := url.ParseQuery(rawQuery)
		req := auth.SlotRequest{Path: path, URLPath: urlPath, Query: query, Authorization: authorization, Size: size}
		if hasType {
			req.ContentType = &ctype
		}
		slot, err := v.Verify(req)
		if err != nil && !errors.Is(err, auth.ErrSlotExpired) && !errors.Is(err, auth.ErrSizeMismatch) {
			if slot.Path != "" || slot.SignatureHash != ([32]byte{}) {
				t.Fatalf("failed Verify (%v) returned a filled slot %+v", err, slot)
			}
			return
		}
		// Accepted (possibly expired or of another size): the MAC must be right.
		if slot.Path != path {
			t.Fatalf("slot path %q, request path %q", slot.Path, path)
		}
		var sig, msg string
		switch slot.Protocol {
		case auth.ProtoV1:
			sig, msg = query.Get("v"), path+" "+strconv.FormatInt(size, 10)
		case auth.ProtoV2, auth.ProtoToken:
			typ := auth.DefaultContentType
			if hasType {
				typ = ctype
			}
			sig, msg = query.Get(string(slot.Protocol)), path+"\x00"+strconv.FormatInt(size, 10)+"\x00"+typ
		case auth.ProtoV3:
			sig, msg = query.Get("v3"), "PUT\n"+query.Get("expires")+"\n"+urlPath
		case auth.ProtoJWT:
			_, token, _ := strings.Cut(strings.TrimSpace(authorization), " ")
			token = strings.TrimSpace(token)
			parts := strings.Split(token, ".")
			if len(parts) != 3 {
				t.Fatalf("accepted token %q is not three segments", token)
			}
			mac, err := base64.RawURLEncoding.DecodeString(parts[2])
			if err != nil {
				t.Fatalf("accepted token signature does not decode: %v", err)
			}
			sig, msg = hex.EncodeToString(mac), parts[0]+"."+parts[1]
		default:
			t.Fatalf("accepted slot has protocol %q", slot.Protocol)
		}
		if !strings.EqualFold(sig, macHex(testSecret, msg)) {
			t.Fatalf("accepted %s slot whose MAC does not verify independently", slot.Protocol)
		}
	})
}

package gateway

import (
	"net/http"
	"testing"

	"github.com/uploadgate/uploadgate/auth"
)

// The 412 cases of docs/tus.md: a PATCH or DELETE on an upload URL without
// Tus-Resumable, or with a version other than 1.0.0. HEAD and OPTIONS answer
// without it.
func TestTusPreconditionFailed(t *testing.T) {
	tg := newTestGateway(t)
	slot := tg.sign(auth.ProtoV2, "a.bin", 10, nil)
	res := tg.tusCreate(slot, 10, nil)
	wantStatus(t, res, http.StatusCreated)
	loc := res.Header.Get("Location")
	for _, c := range []struct {
		what, method, url string
		header            map[string]string
		want              int
	}{
		// HEAD is also the offset probe of a PUT resume and of the IETF
		// draft, which send no Tus-Resumable: it answers without one.
		{"HEAD without Tus-Resumable", http.MethodHead, loc, nil, http.StatusOK},
		{"PATCH without Tus-Resumable", http.MethodPatch, loc, map[string]string{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, http.StatusPreconditionFailed},
		{"PATCH with version 0.2.2", http.MethodPatch, loc, map[string]string{"Tus-Resumable": "0.2.2", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, http.StatusPreconditionFailed},
		{"DELETE without Tus-Resumable", http.MethodDelete, loc, nil, http.StatusPreconditionFailed},
		{"OPTIONS without Tus-Resumable", http.MethodOptions, tg.srv.URL + "/files/", nil, http.StatusOK},
		// A creation at the slot URL of an existing upload, which the
		// gateway answers itself, as tusd answers a first one.
		{"repeated creation with version 0.2.2", http.MethodPost, slot.PutURL, map[string]string{"Tus-Resumable": "0.2.2", "Upload-Length": "10"}, http.StatusPreconditionFailed},
		{"repeated creation without Tus-Resumable", http.MethodPost, slot.PutURL, map[string]string{"Upload-Length": "10"}, http.StatusPreconditionFailed},
		{"first creation with version 0.2.2", http.MethodPost, tg.sign(auth.ProtoV2, "b.bin", 10, nil).PutURL, map[string]string{"Tus-Resumable": "0.2.2", "Upload-Length": "10"}, http.StatusPreconditionFailed},
	} {
		got, body := tg.do(c.method, c.url, c.header, nil)
		if got.StatusCode != c.want && !(c.want == http.StatusOK && got.StatusCode == http.StatusNoContent) {
			t.Errorf("%s: %d %q, want %d", c.what, got.StatusCode, body, c.want)
		}
	}
}

// A first creation without content states its offset, as a repeated one does.
func TestTusCreationStatesOffset(t *testing.T) {
	tg := newTestGateway(t)
	slot := tg.sign(auth.ProtoV2, "o.bin", 10, nil)
	first := tg.tusCreate(slot, 10, nil)
	wantStatus(t, first, http.StatusCreated)
	again := tg.tusCreate(slot, 10, nil)
	wantStatus(t, again, http.StatusCreated)
	if first.Header.Get("Upload-Offset") != "0" || again.Header.Get("Upload-Offset") != "0" {
		t.Fatalf("Upload-Offset: first %q, again %q; want 0 and 0", first.Header.Get("Upload-Offset"), again.Header.Get("Upload-Offset"))
	}
}

package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// After the session ended, a fresh slot continues the old upload: the tus
// door answers with the same upload URL and the stored offset; the PUT door
// takes the old slot's PUT URL (XEP-0363 clients never see an upload URL).
func TestRebindAfterSessionExpired(t *testing.T) {
	tg := newTestGateway(t)
	file := "0123456789abcdefghij"

	t.Run("tus", func(t *testing.T) {
		old := tg.sign(auth.ProtoV3, "a.bin", int64(len(file)), nil)
		res := tg.tusCreate(old, int64(len(file)), nil)
		wantStatus(t, res, http.StatusCreated)
		loc := res.Header.Get("Location")
		wantStatus(t, tg.patch(loc, 0, file[:7]), http.StatusNoContent)
		tg.clock.Advance(25 * time.Hour)
		wantStatus(t, tg.head(loc), http.StatusGone)
		wantStatus(t, tg.patch(loc, 7, file[7:]), http.StatusGone)

		// A fresh slot for the same file: same name (in another slot directory) and size.
		fresh := tg.sign(auth.ProtoV2, "a.bin", int64(len(file)), nil)
		other := tg.sign(auth.ProtoV2, "a.bin", int64(len(file)+1), nil)
		mismatch := tg.tusCreate(other, int64(len(file)+1), map[string]string{resumeFromHeader: loc})
		wantStatus(t, mismatch, http.StatusConflict)
		rb := tg.tusCreate(fresh, int64(len(file)), map[string]string{resumeFromHeader: loc})
		wantStatus(t, rb, http.StatusCreated)
		if rb.Header.Get("Location") != loc || rb.Header.Get("Upload-Offset") != "7" {
			t.Fatalf("re-bind: Location %q offset %q", rb.Header.Get("Location"), rb.Header.Get("Upload-Offset"))
		}
		wantStatus(t, tg.patch(loc, 7, file[7:]), http.StatusNoContent)
		get, body := tg.do(http.MethodGet, fresh.GetURL, nil, nil)
		if get.StatusCode != http.StatusOK || body != file {
			t.Fatalf("new slot's GET URL: %d %q", get.StatusCode, body)
		}
		// Only the new slot's URL serves the upload; the old one answers 410.
		if get, body := tg.do(http.MethodGet, old.GetURL, nil, nil); get.StatusCode != http.StatusGone {
			t.Fatalf("old slot's GET URL after a re-bind: %d %q", get.StatusCode, body)
		}
		forged := strings.Replace(loc, idOf(loc), "aaaaaaaaaaaaaaaaaaaaaaaaaa", 1)
		res = tg.tusCreate(tg.sign(auth.ProtoV2, "d.bin", int64(len(file)), nil), int64(len(file)), map[string]string{resumeFromHeader: forged})
		wantStatus(t, res, http.StatusNotFound)
	})

	t.Run("put with the old slot URL", func(t *testing.T) {
		old := tg.sign(auth.ProtoV3, "e.bin", int64(len(file)), nil)
		tg.interruptedPut(old, int64(len(file)), file[:12])
		tg.clock.Advance(25 * time.Hour)
		res, _ := tg.put(old.PutURL, file[12:], map[string]string{"Content-Range": "bytes 12-19/20"})
		wantStatus(t, res, http.StatusForbidden) // the slot expired and so did its session

		fresh := tg.sign(auth.ProtoV2, "e.bin", int64(len(file)), nil)
		tampered := strings.Replace(old.PutURL, "v3=", "v3=00", 1)
		res, _ = tg.put(fresh.PutURL, file[12:], map[string]string{"Content-Range": "bytes 12-19/20", resumeFromHeader: tampered})
		wantStatus(t, res, http.StatusForbidden)
		res, _ = tg.put(fresh.PutURL, file[12:], map[string]string{"Content-Range": "bytes 12-19/20", resumeFromHeader: old.GetURL})
		if res.StatusCode == http.StatusCreated {
			t.Fatal("the GET URL, shared with recipients, re-bound an upload")
		}
		res, msg := tg.put(fresh.PutURL, file[12:], map[string]string{"Content-Range": "bytes 12-19/20", resumeFromHeader: old.PutURL})
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("re-bind PUT: %d %s", res.StatusCode, msg)
		}
		get, body := tg.do(http.MethodGet, fresh.GetURL, nil, nil)
		if get.StatusCode != http.StatusOK || body != file {
			t.Fatalf("new slot's GET URL: %d %q", get.StatusCode, body)
		}
		for _, u := range []string{old.GetURL, old.PutURL} {
			if res, body := tg.do(http.MethodGet, u, nil, nil); res.StatusCode != http.StatusGone {
				t.Fatalf("old slot URL after a re-bind: %d %q", res.StatusCode, body)
			}
		}
		if res, _ := tg.do(http.MethodHead, old.PutURL, nil, nil); res.StatusCode != http.StatusGone {
			t.Fatalf("HEAD on the old PUT URL after a re-bind: %d", res.StatusCode)
		}
	})

	t.Run("a valid slot renews its own session", func(t *testing.T) {
		slot := tg.sign(auth.ProtoV1, "g.bin", int64(len(file)), nil)
		id := tg.interruptedPut(slot, int64(len(file)), file[:3])
		tg.clock.Advance(25 * time.Hour)
		res, msg := tg.put(slot.PutURL, file[3:], map[string]string{"Content-Range": "bytes 3-19/20"})
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("PUT with the still valid v1 slot: %d %s", res.StatusCode, msg)
		}
		if got, _ := tg.stored(id); got != file {
			t.Fatalf("stored %q", got)
		}
	})
}

package gateway

import (
	"net/http"
	"testing"

	"github.com/uploadgate/uploadgate/auth"
)

// What docs/xmpp.md tells client authors about a Content-Range PUT that
// continues an upload without finishing it: its bytes are stored, and the
// answer is 409 with the new Upload-Offset (not 201, the file is not
// complete); the next range from there finishes the file with 201.
func TestPutRangeThatDoesNotFinish(t *testing.T) {
	tg := newTestGateway(t)
	const file = "0123456789"
	slot := tg.sign(auth.ProtoV2, "part.bin", int64(len(file)), nil)
	tg.interruptedPut(slot, int64(len(file)), file[:4])
	res, msg := tg.put(slot.PutURL, file[4:7], map[string]string{"Content-Range": "bytes 4-6/10"})
	if res.StatusCode != http.StatusConflict || res.Header.Get("Upload-Offset") != "7" {
		t.Fatalf("a range that does not finish: %d (Upload-Offset %q) %s; want 409 at 7", res.StatusCode, res.Header.Get("Upload-Offset"), msg)
	}
	res, msg = tg.put(slot.PutURL, file[7:], map[string]string{"Content-Range": "bytes 7-9/10"})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("the last range: %d %s", res.StatusCode, msg)
	}
	if get, body := tg.do(http.MethodGet, slot.GetURL, nil, nil); get.StatusCode != http.StatusOK || body != file {
		t.Fatalf("download: %d %q", get.StatusCode, body)
	}
}

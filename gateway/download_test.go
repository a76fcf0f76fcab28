package gateway

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/uploadgate/uploadgate/auth"
)

// manyRanges is a Range header of n ranges produced by one(i).
func manyRanges(n int, one func(i int) string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = one(i)
	}
	return "bytes=" + strings.Join(parts, ",")
}

// checkRangeFloods downloads a 4 KiB file with abusive Range headers, each
// answered 200 with the file alone, and with at most maxRanges ordered ranges,
// answered 206.
func checkRangeFloods(t *testing.T, tg *testGateway, multipart bool) {
	t.Helper()
	file := strings.Repeat("0123456789abcdef", 256) // 4 KiB
	slot := tg.sign(auth.ProtoV1, "small.bin", int64(len(file)), nil)
	res, _ := tg.put(slot.PutURL, file, nil)
	wantStatus(t, res, http.StatusCreated)

	for name, rh := range map[string]string{
		"1000 times 0-0":         manyRanges(1000, func(int) string { return "0-0" }),
		"17 ordered ranges":      manyRanges(maxRanges+1, func(i int) string { return strconv.Itoa(2*i) + "-" + strconv.Itoa(2*i) }),
		"overlapping":            "bytes=0-99,50-149",
		"repeated":               "bytes=0-0,0-0",
		"out of order":           "bytes=100-199,0-9",
		"suffix overlapping":     "bytes=4000-4010,-100",
		"1000 empty and a range": "bytes=" + strings.Repeat(",", 1000) + "0-0",
	} {
		t.Run(name, func(t *testing.T) {
			get, body := tg.do(http.MethodGet, slot.GetURL, map[string]string{"Range": rh}, nil)
			if get.StatusCode != http.StatusOK || body != file {
				t.Fatalf("GET with Range %.60q…: %d, %d bytes (%s); want 200 and the file's %d bytes",
					rh, get.StatusCode, len(body), get.Header.Get("Content-Type"), len(file))
			}
		})
	}
	// One range, and up to maxRanges ordered ranges, are served as before.
	get, body := tg.do(http.MethodGet, slot.GetURL, map[string]string{"Range": "bytes=16-31"}, nil)
	if get.StatusCode != http.StatusPartialContent || body != file[16:32] {
		t.Fatalf("GET bytes=16-31: %d %q", get.StatusCode, body)
	}
	if multipart {
		rh := manyRanges(maxRanges, func(i int) string { return strconv.Itoa(100*i) + "-" + strconv.Itoa(100*i+9) })
		get, body = tg.do(http.MethodGet, slot.GetURL, map[string]string{"Range": rh}, nil)
		if get.StatusCode != http.StatusPartialContent || !strings.HasPrefix(get.Header.Get("Content-Type"), "multipart/byteranges") {
			t.Fatalf("GET with %d ordered ranges: %d %s", maxRanges, get.StatusCode, get.Header.Get("Content-Type"))
		}
		if len(body) > len(file) {
			t.Errorf("GET with %d ordered ranges of 10 bytes: %d bytes", maxRanges, len(body))
		}
	}
}

// A Range header with more than maxRanges ranges, or with overlapping or
// unordered ones, gets the whole file (200), not a multipart answer many
// times its size.
func TestDownloadRangeFlood(t *testing.T) {
	checkRangeFloods(t, newTestGateway(t), true)
}

// The same on S3, where the object store answers Range (limitRanges strips
// the header before s3store passes it on; TestLimitRanges covers the rule).
func TestDownloadRangeFloodOnS3(t *testing.T) {
	checkRangeFloods(t, newS3TestGateway(t), false)
}

func TestLimitRanges(t *testing.T) {
	const size = 1000
	for rh, keep := range map[string]bool{
		"":                          true,
		"bytes=0-0":                 true,
		"bytes=-500":                true,
		"bytes=500-":                true,
		"bytes=0-9,10-19":           true,
		"bytes=0-9, 20-29 ,":        true,
		"bytes=0-9,2000-3000,10-19": true, // the unsatisfiable range is not served
		"bytes=0-9,-10":             true,
		"bytes=5-2":                 true, // malformed: refused by the server
		"items=0-9,0-9":             true,
		manyRanges(maxRanges, func(i int) string { return strconv.Itoa(10*i) + "-" + strconv.Itoa(10*i+1) }): true,

		manyRanges(maxRanges+1, func(i int) string { return strconv.Itoa(10*i) + "-" + strconv.Itoa(10*i+1) }): false,
		manyRanges(1000, func(int) string { return "0-0" }):                                                    false,
		"bytes=0-9,9-19":    false,
		"bytes=10-19,0-9":   false,
		"bytes=0-,5-6":      false,
		"bytes=-10,990-999": false,
		"bytes=0-0,0-0":     false,
	} {
		r := httptest.NewRequest(http.MethodGet, "/f", nil)
		if rh != "" {
			r.Header.Set("Range", rh)
			r.Header.Set("If-Range", `"x"`)
		}
		got := limitRanges(r, size)
		if keep && got != r {
			t.Errorf("limitRanges(%.60q) changed the request", rh)
		}
		if !keep && (got.Header.Get("Range") != "" || got.Header.Get("If-Range") != "") {
			t.Errorf("limitRanges(%.60q) kept Range %q, If-Range %q", rh, got.Header.Get("Range"), got.Header.Get("If-Range"))
		}
		if !keep && r.Header.Get("Range") != rh {
			t.Errorf("limitRanges(%.60q) changed the caller's request", rh)
		}
	}
}

package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// A request that announces a body and then sends nothing has its connection
// closed after about --network-timeout, also where no upload handler moves
// the read deadline (here a path the gateway answers without reading the
// body, which net/http would otherwise wait for to reuse the connection).
func TestStalledRequestConnectionCloses(t *testing.T) {
	s := startServe(t, "--data-dir", t.TempDir(), "--network-timeout", "1s")
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/nothing-here", "/healthz"} {
		t.Run(strings.TrimPrefix(path, "/"), func(t *testing.T) {
			conn, err := net.Dial("tcp", u.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n", path, u.Host)
			// Whatever the answer, the connection must then close.
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.Copy(io.Discard, conn)
			elapsed := time.Since(start)
			if err != nil {
				t.Fatalf("connection not closed after %v: %v", elapsed.Round(time.Millisecond), err)
			}
			if elapsed > 3*time.Second {
				t.Errorf("connection closed after %v; want about --network-timeout (1s)", elapsed.Round(time.Millisecond))
			}
		})
	}
}

// The read timeout bounds a stall, not an upload: a PUT whose body trickles in
// for several times --network-timeout, never pausing that long, completes.
func TestSlowSteadyUploadIsNotCut(t *testing.T) {
	s := startServe(t, "--data-dir", t.TempDir(), "--network-timeout", "1s")
	const size, pieces = 100, 10
	putURL := signSlot(t, s.URL, "slow", "slow.bin", size)
	pr, pw := io.Pipe()
	go func() {
		for range pieces {
			time.Sleep(300 * time.Millisecond)
			if _, err := pw.Write([]byte(strings.Repeat("x", size/pieces))); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, err := http.NewRequest(http.MethodPut, putURL, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("slow PUT after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("slow PUT over %v: %d; want 201", time.Since(start).Round(time.Millisecond), resp.StatusCode)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("the PUT took %v: not longer than --network-timeout, proves nothing", d)
	}
}

// Nor does it bound a download: a client that reads a file slowly, for
// several times --network-timeout, gets all of it (there is no WriteTimeout).
func TestSlowDownloadIsNotCut(t *testing.T) {
	s := startServe(t, "--data-dir", t.TempDir(), "--network-timeout", "1s")
	const size = 32 << 20
	putURL := signSlot(t, s.URL, "big", "big.bin", size)
	if code := put(t, putURL, make([]byte, size)); code != http.StatusCreated {
		t.Fatalf("PUT: %d", code)
	}
	getURL, _, _ := strings.Cut(putURL, "?")
	start := time.Now()
	resp, err := http.Get(getURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	var got int64
	for {
		n, err := io.CopyN(io.Discard, resp.Body, 2<<20)
		got += n
		if err != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got != size {
		t.Fatalf("slow download: %d of %d bytes after %v", got, size, time.Since(start).Round(time.Millisecond))
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("the download took %v: not longer than --network-timeout, proves nothing", d)
	}
}

package gateway

import (
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/uploadgate/uploadgate/auth"
)

// DemoPath is where the demo pages are served.
const DemoPath = "/demo/"

// demoCSP is the Content-Security-Policy of the demo pages: scripts, styles
// and images from the gateway only, no inline script; uploads may go to any
// gateway a pasted slot URL names.
const demoCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self' http: https:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

// DemoConfig enables the demo pages under DemoPath.
type DemoConfig struct {
	// Files are the pages and their assets (web.Files()).
	Files fs.FS
	// MintSecret, when not empty, lets the pages ask for slots (POST
	// DemoPath+"slot") signed with it. Only requests from a loopback address
	// are answered; set it only when the gateway listens on loopback.
	MintSecret string
	// ListenAddr is the address the gateway listens on (host:port, the port
	// resolved). Slots are minted only for requests addressed to it (Host
	// and Origin), so a page of another site whose name resolves to the
	// loopback address (DNS rebinding) cannot have them minted. Required
	// with MintSecret.
	ListenAddr string
}

// forwardingHeaders are set by proxies. A request carrying any of them came
// through a proxy, even when its connection comes from loopback, and is never
// given a demo slot.
var forwardingHeaders = []string{"X-Forwarded-For", "X-Real-IP", "Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto"}

type demoSlotRequest struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	Type string `json:"type"`
}

type demoSlotResponse struct {
	PutURL string `json:"putURL"`
	GetURL string `json:"getURL"`
}

func (g *Gateway) serveDemo(w http.ResponseWriter, r *http.Request) {
	d := g.cfg.Demo
	h := w.Header()
	h.Set("Content-Security-Policy", demoCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	if r.URL.Path+"/" == DemoPath {
		http.Redirect(w, r, DemoPath, http.StatusMovedPermanently)
		return
	}
	if r.URL.Path == DemoPath+"slot" {
		g.serveDemoSlot(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	http.StripPrefix(strings.TrimSuffix(DemoPath, "/"), http.FileServerFS(d.Files)).ServeHTTP(w, r)
}

// serveDemoSlot mints a slot for the demo pages, only when minting is enabled
// and only for a browser on this machine that loaded the pages from the
// gateway's listen address: the connection comes from loopback without any
// forwarding header (no proxy in between), and Host and Origin both name the
// listen address (no DNS rebinding). The JSON content type makes other origins
// preflight, which is not answered here.
func (g *Gateway) serveDemoSlot(w http.ResponseWriter, r *http.Request) {
	d := g.cfg.Demo
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if d.MintSecret == "" {
		http.Error(w, "this gateway does not mint slots: paste a slot URL", http.StatusForbidden)
		return
	}
	if reason := demoMintRefusal(r, d.ListenAddr); reason != "" {
		http.Error(w, reason, http.StatusForbidden)
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		http.Error(w, "want application/json", http.StatusUnsupportedMediaType)
		return
	}
	var req demoSlotRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	base := g.cfg.PublicURL
	if base == "" {
		base = "http://" + r.Host
	}
	u, err := url.JoinPath(base, g.cfg.UploadBase)
	if err != nil {
		http.Error(w, "bad upload base", http.StatusInternalServerError)
		return
	}
	sreq := auth.SignRequest{BaseURL: u, Name: req.Name, Size: req.Size, Protocol: auth.ProtoV2}
	if req.Type != "" {
		t := req.Type
		sreq.Type = &t
	}
	slot, err := auth.SignSlot(d.MintSecret, sreq)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(demoSlotResponse{PutURL: slot.PutURL, GetURL: slot.GetURL})
}

// demoMintRefusal is why a request may not have a demo slot minted, or "".
func demoMintRefusal(r *http.Request, listenAddr string) string {
	if !loopbackPeer(r.RemoteAddr) {
		return "slots are minted for loopback clients only"
	}
	for _, name := range forwardingHeaders {
		if _, ok := r.Header[http.CanonicalHeaderKey(name)]; ok {
			return "slots are not minted through a proxy (the request has " + name + ")"
		}
	}
	hosts := demoHosts(listenAddr)
	if len(hosts) == 0 {
		return "this gateway does not mint slots: its listen address is unknown"
	}
	if !slices.Contains(hosts, strings.ToLower(r.Host)) {
		return "slots are minted only for requests to " + listenAddr + " (Host " + strconv.Quote(r.Host) + ")"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return "slots are minted only for the demo page (the request has no Origin)"
	}
	o, ok := strings.CutPrefix(strings.ToLower(origin), "http://")
	if !ok || !slices.Contains(hosts, o) {
		return "cross-origin request refused: slots are minted only for pages from http://" + listenAddr
	}
	return ""
}

// demoHosts are the host[:port] forms, in lower case, that name the listen
// address addr in Host and Origin: addr itself, localhost:port for a
// loopback address and the loopback addresses for localhost, each without
// the port too for port 80.
func demoHosts(addr string) []string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" || port == "0" {
		return nil
	}
	host = strings.ToLower(host)
	names := []string{host}
	if host == "localhost" {
		names = append(names, "127.0.0.1", "::1")
	} else if a, err := netip.ParseAddr(host); err == nil && a.Unmap().IsLoopback() {
		names = append(names, "localhost")
	}
	var out []string
	for _, n := range names {
		out = append(out, net.JoinHostPort(n, port))
		if port == "80" {
			if strings.Contains(n, ":") {
				n = "[" + n + "]"
			}
			out = append(out, n)
		}
	}
	return out
}

func loopbackPeer(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// LoopbackListen reports whether a --listen address (host:port) accepts
// connections from this machine only.
func LoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

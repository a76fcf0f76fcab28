package gateway

import (
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
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
}

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

// serveDemoSlot mints a slot for the demo pages: loopback clients only, same
// origin only (the JSON content type makes other origins preflight, which is
// not answered here), and only when minting is enabled.
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
	if !loopbackPeer(r.RemoteAddr) {
		http.Error(w, "slots are minted for loopback clients only", http.StatusForbidden)
		return
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
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

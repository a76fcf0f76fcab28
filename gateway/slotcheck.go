package gateway

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// checkSlot verifies the slot a request claims, counts the result, and
// applies the limit on failed verifications per client address: an address
// that failed too often gets 429 until its allowance refills, unless the slot
// belongs to an upload whose session is live (its requests are never limited).
func (g *Gateway) checkSlot(r *http.Request, sp slotPath, req auth.SlotRequest) (auth.Slot, error) {
	addr := clientAddr(r, g.cfg.TrustedProxies)
	blocked, wait := g.limiter.Blocked(addr)
	slot, err := g.cfg.Verifier.Verify(req)
	g.countSlotCheck(slot, err)
	failed := err != nil && !errors.Is(err, auth.ErrSlotExpired)
	if failed {
		g.limiter.Fail(addr)
	}
	if blocked && (failed || !g.slotSessionLive(r, sp)) {
		secs := int(wait/time.Second) + 1
		return slot, refuse(http.StatusTooManyRequests, "too many failed slot checks; retry later").with("Retry-After", strconv.Itoa(secs))
	}
	return slot, err
}

func (g *Gateway) slotSessionLive(r *http.Request, sp slotPath) bool {
	_, err := g.cfg.Sessions.AuthorizeSlot(r.Context(), sp.Path)
	return err == nil
}

// countSlotCheck counts a slot check by protocol and result.
func (g *Gateway) countSlotCheck(slot auth.Slot, err error) {
	proto := string(slot.Protocol)
	if proto == "" {
		proto = protoUnknown
	}
	result := resultOK
	switch {
	case err == nil:
	case errors.Is(err, auth.ErrSlotExpired):
		result = resultExpired
	case errors.Is(err, auth.ErrNoSignature), errors.Is(err, auth.ErrBearerRequired):
		result = resultMissing
	case errors.Is(err, auth.ErrMalformedSignature):
		result = resultMalformed
	case errors.Is(err, auth.ErrSlotMismatch), errors.Is(err, auth.ErrSizeMismatch):
		result = resultMismatch
	default:
		result = resultInvalid
	}
	g.metrics.slotChecks.WithLabelValues(proto, result).Inc()
}

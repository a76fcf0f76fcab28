package gateway

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// checkSlot verifies the slot a request claims, counts the result, and
// applies the limit on failed verifications per client address. Only a
// failed verification is limited: an address that failed too often gets 429
// for its next failures until its allowance refills, while a signature that
// verifies (expired or not) is never refused, so that one broken client
// behind a NAT or a proxy does not lock out everyone else there.
func (g *Gateway) checkSlot(r *http.Request, req auth.SlotRequest) (auth.Slot, error) {
	slot, err := g.cfg.Verifier.Verify(req)
	g.countSlotCheck(slot, err)
	if err == nil || errors.Is(err, auth.ErrSlotExpired) {
		return slot, err
	}
	addr := clientAddr(r, g.cfg.TrustedProxies)
	if blocked, wait := g.limiter.Blocked(addr); blocked {
		secs := int(wait/time.Second) + 1
		return slot, refuse(http.StatusTooManyRequests, "too many failed slot checks; retry later").with("Retry-After", strconv.Itoa(secs))
	}
	g.limiter.Fail(addr)
	return slot, err
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

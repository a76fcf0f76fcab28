package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/prometheuscollector"
)

// metrics are the gateway's own series. Label values are bounded: protocols
// from auth.Protocols, results from the fixed set below.
type metrics struct {
	slotChecks     *prometheus.CounterVec
	sessionsOpened prometheus.Counter
	sessionAccepts *prometheus.CounterVec
	addrChanges    prometheus.Counter
	rebinds        prometheus.Counter
}

// Doors, as metric label values.
const (
	doorPut = "put"
	doorTus = "tus"
)

// Results of a slot check.
const (
	resultOK        = "ok"
	resultExpired   = "expired"
	resultInvalid   = "invalid"
	resultMissing   = "missing"
	resultMalformed = "malformed"
	resultMismatch  = "mismatch"
)

func newMetrics(reg prometheus.Registerer, tusd handler.Metrics) (*metrics, error) {
	m := &metrics{
		slotChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uploadgate_slot_checks_total",
			Help: "Slot signature checks by protocol and result (ok, expired, invalid, missing, malformed, mismatch).",
		}, []string{"protocol", "result"}),
		sessionsOpened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "uploadgate_sessions_opened_total",
			Help: "Upload sessions opened by the first valid use of a slot.",
		}),
		sessionAccepts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uploadgate_session_accepts_total",
			Help: "Requests with an expired slot that were accepted because the upload's session was live, by door.",
		}, []string{"door"}),
		addrChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "uploadgate_client_address_changes_total",
			Help: "Changes of the client address within an upload session (a network switch); never refused.",
		}),
		rebinds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "uploadgate_rebinds_total",
			Help: "Uploads re-bound to a fresh slot (or renewed with their own slot) after their session ended.",
		}),
	}
	for _, c := range []prometheus.Collector{m.slotChecks, m.sessionsOpened, m.sessionAccepts, m.addrChanges, m.rebinds, prometheuscollector.New(tusd)} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

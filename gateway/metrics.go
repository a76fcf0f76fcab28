package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/prometheuscollector"
)

// metrics are the gateway's own series. Label values are bounded: protocols
// from auth.Protocols, results from the fixed set below.
type metrics struct {
	slotChecks *prometheus.CounterVec
}

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
	}
	for _, c := range []prometheus.Collector{m.slotChecks, prometheuscollector.New(tusd)} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

package backplane

import (
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descForwarded = prometheus.NewDesc("nexo_forward_requests_total",
		"Requests a gateway forwarded to workers over NATS (retries not counted).", nil, nil)
	descMessages = prometheus.NewDesc("nexo_forward_messages_total",
		"NATS messages the forwarded requests travelled in; requests/messages is the mean batch.", nil, nil)
	descRetried = prometheus.NewDesc("nexo_forward_retries_total",
		"Idempotent forwarded requests sent again because no worker answered in time.", nil, nil)
	descFailed = prometheus.NewDesc("nexo_forward_failures_total",
		"Forwarded requests answered by the gateway itself, by code: UNAVAILABLE (no worker, no NATS) or TIMEOUT.", []string{"code"}, nil)
	descWaiting = prometheus.NewDesc("nexo_forward_waiting",
		"Forwarded requests waiting for a worker's answer now.", nil, nil)
	descNATS = prometheus.NewDesc("nexo_nats_connected",
		"1 while the gateway is connected to NATS.", nil, nil)
)

// forwardCollector exports a forwarder's counters on the server's /metrics.
type forwardCollector struct {
	f  *Forwarder
	nc *nats.Conn
}

func (c forwardCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descForwarded, descMessages, descRetried, descFailed, descWaiting, descNATS} {
		ch <- d
	}
}

func (c forwardCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.f.Stats()
	connected := 0.0
	if c.nc.IsConnected() {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(descForwarded, prometheus.CounterValue, float64(st.Sent))
	ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, float64(st.Messages))
	ch <- prometheus.MustNewConstMetric(descRetried, prometheus.CounterValue, float64(st.Retried))
	ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(st.Unavailable), "UNAVAILABLE")
	ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(st.TimedOut), "TIMEOUT")
	ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(st.Waiting))
	ch <- prometheus.MustNewConstMetric(descNATS, prometheus.GaugeValue, connected)
}

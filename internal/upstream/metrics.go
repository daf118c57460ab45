package upstream

import "github.com/prometheus/client_golang/prometheus"

var (
	descUp = prometheus.NewDesc("nexo_upstream_up",
		"1 while the upstream answers rpc.discover; its methods are UNAVAILABLE while 0.", []string{"upstream"}, nil)
	descMethods = prometheus.NewDesc("nexo_upstream_methods",
		"Methods the upstream's OpenRPC document describes.", []string{"upstream"}, nil)
	descCalls = prometheus.NewDesc("nexo_upstream_calls_total",
		"Calls of the upstream's methods, answered or not.", []string{"upstream"}, nil)
	descErrors = prometheus.NewDesc("nexo_upstream_errors_total",
		"Calls of the upstream's methods that ended in an error, by nexo code.", []string{"upstream", "code"}, nil)
	descDowns = prometheus.NewDesc("nexo_upstream_downs_total",
		"Times the upstream's health check found it down.", []string{"upstream"}, nil)
	descDials = prometheus.NewDesc("nexo_upstream_connections_total",
		"TCP connections opened to the upstream; kept alive, they stay few.", []string{"upstream"}, nil)
)

// Collector exports the upstreams' health and counters on /metrics, and
// the latency histogram nexo_upstream_call_seconds.
type Collector []*Upstream

// Describe implements prometheus.Collector.
func (c Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descMethods, descCalls, descErrors, descDials, descDowns} {
		ch <- d
	}
	for _, u := range c {
		u.seconds.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (c Collector) Collect(ch chan<- prometheus.Metric) {
	for _, u := range c {
		h := u.Health()
		up := 0.0
		if h.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, u.name)
		ch <- prometheus.MustNewConstMetric(descMethods, prometheus.GaugeValue, float64(h.Methods), u.name)
		ch <- prometheus.MustNewConstMetric(descCalls, prometheus.CounterValue, float64(h.Calls), u.name)
		for code, n := range h.ErrorCodes {
			ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(n), u.name, code)
		}
		ch <- prometheus.MustNewConstMetric(descDials, prometheus.CounterValue, float64(h.Connections), u.name)
		ch <- prometheus.MustNewConstMetric(descDowns, prometheus.CounterValue, float64(h.Downs), u.name)
		u.seconds.Collect(ch)
	}
}

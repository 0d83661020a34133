package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus series, in a registry of its own so
// that several Servers (tests) never collide in the global one.
type metrics struct {
	reg       *prometheus.Registry
	clients   prometheus.Gauge
	batches   prometheus.Counter
	records   prometheus.Counter
	conflicts prometheus.Counter
	bytesIn   prometheus.Counter
	bytesOut  prometheus.Counter
	drops     prometheus.Counter
	errors    *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "synkfs_clients_connected", Help: "WebSocket clients connected now.",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "synkfs_batches_applied_total", Help: "Batches committed to the store.",
		}),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "synkfs_records_applied_total", Help: "Records and deletes committed to the store.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "synkfs_conflicts_total", Help: "Writes not applied because their base was stale.",
		}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "synkfs_bytes_in_total", Help: "Message payload bytes received from clients.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "synkfs_bytes_out_total", Help: "Message payload bytes sent to clients.",
		}),
		drops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "synkfs_send_queue_drops_total", Help: "Clients disconnected because their send queue was full.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synkfs_errors_total", Help: "Refused messages and records, by error code.",
		}, []string{"code"}),
	}
	m.reg.MustRegister(m.clients, m.batches, m.records, m.conflicts, m.bytesIn, m.bytesOut, m.drops, m.errors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "synkfs_store_version", Help: "Version of the last committed batch.",
		}, func() float64 { return float64(s.store.Version()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "synkfs_store_floor", Help: "Highest version whose tombstones were compacted.",
		}, func() float64 { return float64(s.store.Floor()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "synkfs_store_records", Help: "Live records in the store.",
		}, func() float64 { return float64(s.store.Count()) }),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

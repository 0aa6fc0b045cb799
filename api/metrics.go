package api

import (
	"net/http"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds Herald's Prometheus metrics. Counters that the node keeps
// anyway are read at scrape time (nodeCollector), so the message path pays
// nothing for them; only latencies are observed as they happen.
type Metrics struct {
	registry *prometheus.Registry
	// BrokerOps times every broker call by operation.
	BrokerOps *prometheus.HistogramVec
	// Publish times POST /api/publish and /api/batch end to end.
	Publish prometheus.Histogram
	// PublishRequests counts publish requests by result.
	PublishRequests *prometheus.CounterVec

	// publishOK is BrokerOps' observer for successful publishes, looked
	// up once: every publish observes it, and WithLabelValues hashes its
	// labels on each call.
	publishOK prometheus.Observer
}

const namespace = "herald"

// Snapshotter is what the metrics read of a node at scrape time.
type Snapshotter interface{ Snapshot() push.Snapshot }

// NewMetrics registers the metrics for node.
func NewMetrics(node Snapshotter) *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		registry: r,
		BrokerOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "broker_op_duration_seconds",
			Help:    "Duration of broker calls (round trips to Redis) by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}, []string{"op", "result"}),
		Publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "publish_duration_seconds",
			Help:    "Duration of HTTP publish requests, from body read to answer.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}),
		PublishRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "publish_requests_total",
			Help: "HTTP publish requests by status class.",
		}, []string{"code"}),
	}
	m.publishOK = m.BrokerOps.WithLabelValues("publish", "ok")
	r.MustRegister(m.BrokerOps, m.Publish, m.PublishRequests, &nodeCollector{node: node},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds a collector of another part (the webhook sender).
func (m *Metrics) Register(c prometheus.Collector) error { return m.registry.Register(c) }

// ObserveBroker is the node's ObserveBroker hook.
func (m *Metrics) ObserveBroker(op string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	if op == "publish" && err == nil && m.publishOK != nil {
		m.publishOK.Observe(d.Seconds())
		return
	}
	m.BrokerOps.WithLabelValues(op, result).Observe(d.Seconds())
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
}

var (
	descConnections   = desc("connections", "Open client connections (WebSocket, SSE, long-poll).")
	descSubscriptions = desc("subscriptions", "Channel subscriptions of local clients.")
	descChannels      = desc("channels", "Channels with local subscribers.")
	descReceived      = desc("messages_received_total", "Messages received from the broker for local subscribers.")
	descDelivered     = desc("messages_delivered_total", "Message frames queued to local clients.")
	descDropped       = desc("messages_dropped_total", "Frames not queued because their client was being closed.")
	descSkipped       = desc("messages_skipped_total", "Messages not sent to throttled subscribers (max_rate, conflate namespaces): each one got a newer message with the count instead.")
	descConflated     = desc("conflated_sessions_total", "Times a client fell behind in a conflate namespace and went latest-only instead of being closed.")
	descLagging       = desc("lagging_clients_total", "Times a WebSocket client was found reading slower than its feed (its receive window kept shrinking): its messages are held back and written together.")
	descClientPubs    = desc("client_publishes_total", "Publishes from clients (client_publish namespaces) accepted.")
	descGaps          = desc("gaps_total", "Offset gaps found (after broker outages) and filled or reported.")
	descReconnects    = desc("broker_reconnects_total", "Times the broker connection (Redis) came back.")
	descQueued        = desc("send_queue_bytes", "Bytes waiting in clients' send queues.")
	descMaxQueued     = desc("send_queue_max_bytes", "The largest single client send queue, in bytes.")
	descRejections    = desc("rejections_total", "Refusals and limit closes by reason.", "reason")
	descCloses        = desc("connection_closes_total", "WebSocket connections ended, by close reason.", "reason")
	descSlow          = desc("slow_consumer_closes_total", "Clients closed because their send queue overflowed.")
	descPubSubLag     = desc("broker_pubsub_lag_seconds", "The broker pub/sub's delay as the node's canary measures it: the round trip of the newest probe back, or how long the next one has been out when longer (canary_interval).")
	descPanics        = desc("panics_recovered_total", "Panics recovered on connection goroutines (each closed its connection with 1011 or its request with 500); should stay 0.")
)

// nodeCollector reads the node's figures at scrape time.
type nodeCollector struct{ node Snapshotter }

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descSubscriptions, descChannels, descReceived, descDelivered,
		descDropped, descSkipped, descConflated, descLagging, descClientPubs, descGaps, descReconnects, descQueued, descMaxQueued, descRejections, descCloses, descSlow, descPanics, descPubSubLag} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.node.Snapshot()
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descConnections, s.Connections)
	gauge(descSubscriptions, s.Subscriptions)
	gauge(descChannels, s.Channels)
	gauge(descQueued, s.QueuedBytes)
	gauge(descMaxQueued, s.MaxQueued)
	ch <- prometheus.MustNewConstMetric(descPubSubLag, prometheus.GaugeValue, s.PubSubLag)
	counter(descReceived, s.Received)
	counter(descDelivered, s.Delivered)
	counter(descDropped, s.Dropped)
	counter(descSkipped, s.Skipped)
	counter(descConflated, s.Conflated)
	counter(descLagging, s.Lagging)
	counter(descClientPubs, s.ClientPubs)
	counter(descGaps, s.Gaps)
	counter(descReconnects, s.Reconnects)
	counter(descSlow, s.Rejections[push.ReasonSlowConsumer.String()])
	counter(descPanics, push.RecoveredPanics())
	for reason, n := range s.Rejections {
		counter(descRejections, n, reason)
	}
	for reason, n := range s.Closes {
		counter(descCloses, n, reason)
	}
}

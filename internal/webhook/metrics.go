package webhook

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The Sender is a prometheus.Collector: its figures are read at scrape
// time, the queue lengths from the store (one round trip per hook).
var (
	queuedDesc = prometheus.NewDesc("herald_webhook_events_queued",
		"Events waiting in the webhook's queue, cluster-wide.", []string{"url"}, nil)
	sentDesc = prometheus.NewDesc("herald_webhook_events_sent_total",
		"Events delivered (answered 2xx) by this node.", []string{"url"}, nil)
	failedDesc = prometheus.NewDesc("herald_webhook_events_failed_total",
		"Events lost: reason dropped (the queue was full; cluster-wide) or expired (given up after webhook_retry; this node).", []string{"url", "reason"}, nil)
	attemptsDesc = prometheus.NewDesc("herald_webhook_attempts_failed_total",
		"POSTs of this node that failed (error or non-2xx) and were retried.", []string{"url"}, nil)
)

// Describe implements prometheus.Collector.
func (s *Sender) Describe(ch chan<- *prometheus.Desc) {
	ch <- queuedDesc
	ch <- sentDesc
	ch <- failedDesc
	ch <- attemptsDesc
}

// Collect implements prometheus.Collector.
func (s *Sender) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, st := range s.Stats(ctx) {
		if st.Queued >= 0 {
			ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, float64(st.Queued), st.URL)
		}
		ch <- prometheus.MustNewConstMetric(sentDesc, prometheus.CounterValue, float64(st.Sent), st.URL)
		ch <- prometheus.MustNewConstMetric(failedDesc, prometheus.CounterValue, float64(st.Dropped), st.URL, "dropped")
		ch <- prometheus.MustNewConstMetric(failedDesc, prometheus.CounterValue, float64(st.Expired), st.URL, "expired")
		ch <- prometheus.MustNewConstMetric(attemptsDesc, prometheus.CounterValue, float64(st.FailedAttempts), st.URL)
	}
}

// Package demo runs the fake live feeds (stocks, sports, danmaku, chat)
// that the demo pages at / show, published in-process.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/heraldpush/herald/push"
)

// Namespaces are the namespaces the demo pages (clients/web) and
// feeds use, with rules that show each feature off.
func Namespaces() map[string]*push.Namespace {
	return map[string]*push.Namespace{
		// The latest price shows at once (snapshot); a short history lets a
		// reconnecting board catch up instead of resetting. A board on a
		// slow link gets the latest prices instead of being disconnected
		// (conflate).
		"stocks": {HistorySize: 100, HistoryTTL: 10 * time.Minute, Snapshot: true, Conflate: true},
		// The event feed is history: a page loads the match so far, then
		// follows it live from that position.
		"sports": {HistorySize: 300, HistoryTTL: time.Hour, Snapshot: true},
		// Bullet comments are fire-and-forget, typed by viewers.
		"danmaku": {ClientPublish: true, PublishRate: push.Rate{N: 3, Per: time.Second}, MaxMessageBytes: 512},
		"chat": {
			HistorySize: 100, HistoryTTL: time.Hour, Presence: push.PresenceMembers,
			ClientPublish: true, PublishRate: push.Rate{N: 5, Per: time.Second}, MaxMessageBytes: 2048,
		},
	}
}

// AddNamespaces adds the demo namespaces that namespaces (a config's,
// not nil) lacks and returns their names. Namespaces the user configured
// are kept as they are.
func AddNamespaces(namespaces map[string]*push.Namespace) []string {
	var added []string
	for _, name := range slices.Sorted(maps.Keys(Namespaces())) {
		if _, ok := namespaces[name]; !ok {
			namespaces[name] = Namespaces()[name]
			added = append(added, name)
		}
	}
	return added
}

// Feeds publishes the fake feeds in-process through the node (no HTTP,
// no API key), until ctx ends. step is the feeds' time unit:
// one second for people, less in tests.
type Feeds struct {
	Node *push.Node
	Log  *slog.Logger
	Step time.Duration
}

// Run starts every feed and returns when ctx ends.
func (d *Feeds) Run(ctx context.Context) {
	feeds := []func(context.Context){d.stocks, d.sports, d.danmaku, d.chat}
	done := make(chan struct{}, len(feeds))
	for _, f := range feeds {
		go func() {
			defer func() { done <- struct{}{} }()
			f(ctx)
		}()
	}
	for range feeds {
		<-done
	}
}

// publish sends v to channel with the channel's namespace retention.
func (d *Feeds) publish(ctx context.Context, channel string, v any) {
	data, _ := json.Marshal(v)
	_, err := d.Node.Publish(ctx, push.Publication{Channel: channel, Data: data})
	var pe *push.Error
	switch {
	case errors.As(err, &pe) && pe.Code != push.CodeUnavailable && pe.Code != push.CodeUncertain:
		d.Log.Error("demo: channel not publishable", "channel", channel, "err", err)
	case err != nil && ctx.Err() == nil:
		d.Log.Warn("demo: publish failed", "channel", channel, "err", err)
	}
}

// wait sleeps for steps of the feed's time unit; false when ctx ended.
func (d *Feeds) wait(ctx context.Context, steps float64) bool {
	t := time.NewTimer(time.Duration(steps * float64(d.Step)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

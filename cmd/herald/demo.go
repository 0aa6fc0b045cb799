package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/heraldpush/herald/push"
)

// cmdDemo is "herald serve --demo": the server with the demo feeds.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return cmdServe(ctx, append([]string{"--demo"}, args...), stdout, stderr)
}

// demoNamespaces are the namespaces the demo pages (clients/web) and
// feeds use, with rules that show each feature off.
func demoNamespaces() map[string]*push.Namespace {
	return map[string]*push.Namespace{
		// The latest price shows at once (snapshot); a short history lets a
		// reconnecting board catch up instead of resetting.
		"stocks": {HistorySize: 100, HistoryTTL: 10 * time.Minute, Snapshot: true},
		// The event feed is history: a page loads the match so far, then
		// follows it live from that position.
		"sports": {HistorySize: 300, HistoryTTL: time.Hour, Snapshot: true},
		// Bullet comments are fire-and-forget, typed by viewers.
		"danmaku": {ClientPublish: true, PublishRate: push.Rate{N: 3, Per: time.Second}, MaxMessageBytes: 512},
		"chat": {
			HistorySize: 100, HistoryTTL: time.Hour, Presence: true,
			ClientPublish: true, PublishRate: push.Rate{N: 5, Per: time.Second}, MaxMessageBytes: 2048,
		},
	}
}

// addDemoNamespaces adds the demo namespaces the config lacks and returns
// their names. Namespaces the user configured are kept as they are.
func (c *Config) addDemoNamespaces() []string {
	if c.Namespaces == nil {
		c.Namespaces = map[string]*push.Namespace{}
	}
	var added []string
	for _, name := range slices.Sorted(maps.Keys(demoNamespaces())) {
		if _, ok := c.Namespaces[name]; !ok {
			c.Namespaces[name] = demoNamespaces()[name]
			added = append(added, name)
		}
	}
	return added
}

// demoFeeds publishes the fake feeds in-process through the node (no
// HTTP, no API key), until ctx ends. step is the feeds' time unit:
// one second for people, less in tests.
type demoFeeds struct {
	node *push.Node
	log  *slog.Logger
	step time.Duration
}

// run starts every feed and returns when ctx ends.
func (d *demoFeeds) run(ctx context.Context) {
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
func (d *demoFeeds) publish(ctx context.Context, channel string, v any) {
	data, _ := json.Marshal(v)
	_, err := d.node.Publish(ctx, push.Publication{Channel: channel, Data: data})
	var pe *push.Error
	switch {
	case errors.As(err, &pe) && pe.Code != push.CodeUnavailable && pe.Code != push.CodeUncertain:
		d.log.Error("demo: channel not publishable", "channel", channel, "err", err)
	case err != nil && ctx.Err() == nil:
		d.log.Warn("demo: publish failed", "channel", channel, "err", err)
	}
}

// wait sleeps for steps of the feed's time unit; false when ctx ended.
func (d *demoFeeds) wait(ctx context.Context, steps float64) bool {
	t := time.NewTimer(time.Duration(steps * float64(d.step)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Package e2e is Herald's end-to-end suite: real nodes on random ports,
// real WebSocket clients (coder/websocket, not the server's gws), HTTP,
// SSE and long-poll, a real redis-server for the cluster tests and real
// Chromium for the browser tests (clients/web/e2e).
//
// Run runs the whole suite against a node constructor, the way
// broker/brokertest.Run runs its suite against any engine: the server's
// own test calls Run(t, server.Start), and another assembly of the same
// parts can be held to the same behaviour by passing its constructor.
//
// The tests are ordinary test functions kept in non-test files so that a
// test in another package can run them; Run lists them in tests, and
// TestEveryTestListed (suite_test.go) fails when one is missing there.
package e2e

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/heraldpush/herald/internal/server"
)

// NewNode starts a node from cfg, as server.Start does. The suite makes
// every node with it and shuts each one down with Node.Shutdown.
type NewNode func(ctx context.Context, cfg server.Config, logger *slog.Logger) (*server.Node, error)

var (
	// runMu is held by Run for its whole run: one suite at a time per
	// process, since the tests find the constructor in newNode.
	runMu sync.Mutex
	// newNode is the constructor of the running suite; nil outside Run
	// (helpers used from other packages' tests then use server.Start).
	// The package variable keeps the test bodies as they were written
	// for package main, instead of threading a suite value through all
	// of them.
	newNode NewNode
)

// constructor is the node constructor for the current test.
func constructor() NewNode {
	if newNode != nil {
		return newNode
	}
	return server.Start
}

// Run runs every test of the suite as a subtest of t against nodes made
// by start.
func Run(t *testing.T, start NewNode) {
	runMu.Lock()
	defer runMu.Unlock()
	newNode = start
	defer func() { newNode = nil }()
	for _, tc := range tests {
		t.Run(tc.name, tc.fn)
	}
}

// tests is the suite, by file.
var tests = []struct {
	name string
	fn   func(*testing.T)
}{
	// feeds.go
	{"MaxRateOverWSAndSSE", TestMaxRateOverWSAndSSE},
	{"BrowserTickerOnThrottledLink", TestBrowserTickerOnThrottledLink},
	{"BrowserDanmakuDensity", TestBrowserDanmakuDensity},
	{"BenchMaxRate", TestBenchMaxRate},
	// badinput.go
	{"BadInput", TestBadInput},
	{"OversizedFrame", TestOversizedFrame},
	// browser.go
	{"BrowserDemoPages", TestBrowserDemoPages},
	{"BrowserDanmakuBetweenBrowsers", TestBrowserDanmakuBetweenBrowsers},
	{"BrowserChat", TestBrowserChat},
	{"BrowserClientReconnects", TestBrowserClientReconnects},
	{"WSPackageClient", TestWSPackageClient},
	{"CompressedFramesDecodeInNodeAndChromium", TestCompressedFramesDecodeInNodeAndChromium},
	{"HeraldJSInNode", TestHeraldJSInNode},
	{"BrowserPermanentClose", TestBrowserPermanentClose},
	// browser_shared.go
	{"BrowserSharedConnection", TestBrowserSharedConnection},
	{"BrowserSharedTokens", TestBrowserSharedTokens},
	{"HeraldJSSize", TestHeraldJSSize},
	// browser_keyless.go
	{"BrowserKeylessClosedToPages", TestBrowserKeylessClosedToPages},
	{"Churn", TestChurn},
	// browser_admin.go
	{"BrowserAdminPage", TestBrowserAdminPage},
	{"BrowserEventSourceResumesAcrossRestart", TestBrowserEventSourceResumesAcrossRestart},
	// browser_presence.go
	{"BrowserChatPresence", TestBrowserChatPresence},
	// canary.go
	{"CanaryPubSubPaused", TestCanaryPubSubPaused},
	{"CanaryPubSubKilled", TestCanaryPubSubKilled},
	// checker.go
	{"CheckerRandomDrops", TestCheckerRandomDrops},
	{"CheckerOfflineFiveSeconds", TestCheckerOfflineFiveSeconds},
	// cluster.go
	{"PresenceJoinLeave", TestPresenceJoinLeave},
	// presence.go
	{"PresenceCountsUsersOnce", TestPresenceCountsUsersOnce},
	{"PresenceCountsOnly", TestPresenceCountsOnly},
	// webhook.go
	{"WebhooksSurviveReceiverOutage", TestWebhooksSurviveReceiverOutage},
	{"DisconnectAndBan", TestDisconnectAndBan},
	{"StatsChannelsAndAdmin", TestStatsChannelsAndAdmin},
	// config.go
	{"ConfigFileServes", TestConfigFileServes},
	// debug.go
	{"DebugListen", TestDebugListen},
	// demo.go
	{"DemoFeedsPublish", TestDemoFeedsPublish},
	// idempotency.go
	{"IdempotentPublish", TestIdempotentPublish},
	{"IdempotentPublishAcrossNodes", TestIdempotentPublishAcrossNodes},
	// http.go
	{"HTTPAuth", TestHTTPAuth},
	{"HTTPNoKeyLoopbackOnly", TestHTTPNoKeyLoopbackOnly},
	{"HTTPErrors", TestHTTPErrors},
	{"ReservedNamespaceHint", TestReservedNamespaceHint},
	{"Health", TestHealth},
	{"Echo", TestEcho},
	{"WebPage", TestWebPage},
	{"OriginCheck", TestOriginCheck},
	// liveness.go
	{"SlowConsumer", TestSlowConsumer},
	{"Heartbeat", TestHeartbeat},
	// multinode.go
	{"ClusterBehavesAsOne", TestClusterBehavesAsOne},
	{"ClusterTenChannels", TestClusterTenChannels},
	{"ClusterRedisRestart", TestClusterRedisRestart},
	{"ClusterDrain", TestClusterDrain},
	{"NodeProcessKilled", TestNodeProcessKilled},
	// openapi.go
	{"OpenAPIMatchesRoutes", TestOpenAPIMatchesRoutes},
	// pages.go
	{"HeraldJSIsServed", TestHeraldJSIsServed},
	{"PagesAreServed", TestPagesAreServed},
	// recovery.go
	{"RecoverySinceDeliversMissedInOrder", TestRecoverySinceDeliversMissedInOrder},
	{"RecoveryNotPossible", TestRecoveryNotPossible},
	{"RecoveryWhilePublishing", TestRecoveryWhilePublishing},
	{"SnapshotGivesLatestAtOnce", TestSnapshotGivesLatestAtOnce},
	{"HistoryFrameAndEndpoint", TestHistoryFrameAndEndpoint},
	// security.go
	{"TokensOnConnect", TestTokensOnConnect},
	{"RSAKeyRefusesHS256", TestRSAKeyRefusesHS256},
	{"AuthFrameAndExpiry", TestAuthFrameAndExpiry},
	{"ForeignOrigin", TestForeignOrigin},
	{"PublishFlood", TestPublishFlood},
	{"HugeFrameClosed", TestHugeFrameClosed},
	{"ConnectionsPerIP", TestConnectionsPerIP},
	{"SlowlorisHandshake", TestSlowlorisHandshake},
	{"TokensOnHTTPTransports", TestTokensOnHTTPTransports},
	// serversub.go
	{"ServerSubscribe", TestServerSubscribe},
	{"SubsClaim", TestSubsClaim},
	{"UserChannels", TestUserChannels},
	// sse.go
	{"SSEStreamAndResume", TestSSEStreamAndResume},
	{"SSEMultiChannelIDAndErrors", TestSSEMultiChannelIDAndErrors},
	{"LongPoll", TestLongPoll},
	// writepath.go
	{"FullSocketLosesNothing", TestFullSocketLosesNothing},
	{"CompressedAndPlainClients", TestCompressedAndPlainClients},
	{"InvalidUTF8Refused", TestInvalidUTF8Refused},
	{"CloseFromStalledClientStallsNoOne", TestCloseFromStalledClientStallsNoOne},
	// ws.go
	{"Welcome", TestWelcome},
	{"SubscribeQuery", TestSubscribeQuery},
	{"SubscribeFrame", TestSubscribeFrame},
	{"PublishHTTP", TestPublishHTTP},
	{"ClientPublish", TestClientPublish},
	{"ClientPublishRateLimit", TestClientPublishRateLimit},
	{"Unsubscribe", TestUnsubscribe},
	{"Ordering", TestOrdering},
	{"TwoChannelsOneConnection", TestTwoChannelsOneConnection},
	{"FanOut100", TestFanOut100},
	{"Shutdown", TestShutdown},
}

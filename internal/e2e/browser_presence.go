package e2e

import "testing"

// TestBrowserChatPresence: the chat page's online list follows presence
// join and leave events (DESIGN.md §3; the server side is issue 5).
func TestBrowserChatPresence(t *testing.T) {
	requireE2E(t, true)
	n := startTestNode(t, demoConfig())
	runScript(t, "chat-presence.mjs", nil, n.base)
}

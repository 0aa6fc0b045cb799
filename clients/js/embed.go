// Package heraldjs embeds herald.js, the browser client, so that the
// server can serve it at /herald.js with no files next to the binary.
package heraldjs

import _ "embed"

// Source is herald.js as committed: an ES module with no dependencies.
//
//go:embed herald.js
var Source []byte

// Worker is herald-worker.js, the SharedWorker that new Herald({shared:
// true}) starts from next to herald.js; it imports herald.js.
//
//go:embed herald-worker.js
var Worker []byte

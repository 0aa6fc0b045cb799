// Package heraldjs embeds herald.js, the browser client, so that the
// server can serve it at /herald.js with no files next to the binary.
package heraldjs

import _ "embed"

// Source is herald.js as committed: an ES module with no dependencies.
//
//go:embed herald.js
var Source []byte

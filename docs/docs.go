// Package docs embeds the documents the server serves itself: the OpenAPI
// description of the HTTP API, at /api/openapi.yaml.
package docs

import _ "embed"

// OpenAPI is docs/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

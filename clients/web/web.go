// Package web holds Herald's web pages, embedded in the binary and served
// at /.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var files embed.FS

// Pages returns the pages, with index.html at the root.
func Pages() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}

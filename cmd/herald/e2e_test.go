package main

import "github.com/heraldpush/herald/internal/e2e"

// The end-to-end harness under the names the command tests were written
// with.
var (
	testConfig    = e2e.Config
	startTestNode = e2e.Start
	startCluster  = e2e.StartCluster
	urls          = e2e.URLs
	waitFor       = e2e.WaitFor
	decodeJSON    = e2e.DecodeJSON
	query         = e2e.Query
)

const readTimeout = e2e.ReadTimeout

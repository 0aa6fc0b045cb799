-- wrk script for docs/performance.md ("HTTP publish throughput"): every
-- request is one POST /api/publish to the channel "bench".
--
--   wrk -t2 -c64 -d10s -s docs/wrk-publish.lua http://127.0.0.1:8090/api/publish
--
-- No response() callback: with one, wrk parses every answer in Lua and
-- takes CPU from the server it shares the machine with. Check instead that
-- wrk prints no "Non-2xx or 3xx responses" line (a 401 from a non-loopback
-- client or a configured api_key would otherwise look like a fast server).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"channel":"bench","data":{"t":1,"n":2}}'

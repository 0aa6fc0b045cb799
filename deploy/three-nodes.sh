#!/usr/bin/env bash
# Three Herald nodes sharing one Redis on this machine, without Docker.
#
#   bash deploy/three-nodes.sh          # runs until Ctrl-C
#   bash deploy/three-nodes.sh --once   # shows the delivery, then stops
#
# It starts its own redis-server on a spare port (never the 6379 of a
# Redis you may already run, which the nodes would otherwise silently
# share), three nodes on spare ports from 8081 up, subscribes on node 2,
# publishes through node 1, prints what node 2's subscriber got and node
# 3's /api/stats, and on exit stops everything it started and deletes the
# Redis data. Needs redis-server, curl, and herald on the PATH (or Go: it
# builds ./cmd/herald).
set -euo pipefail
cd "$(dirname "$0")/.."

once=false
[ "${1:-}" = --once ] && once=true

dir="$(mktemp -d)"
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

herald="$(command -v herald || true)"
if [ -z "$herald" ]; then
	echo "building herald (not on the PATH)"
	go build -o "$dir/herald" ./cmd/herald
	herald="$dir/herald"
fi

# spare_port N: the first port from N up that nothing listens on.
spare_port() {
	local p=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
	echo "$p"
}

# wait_for WHAT CMD...: run CMD until it succeeds, for up to 10 s.
wait_for() {
	local what=$1
	shift
	for _ in $(seq 100); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "$what did not come up; logs in $dir" >&2
	exit 1
}

rport="$(spare_port 16379)"
redis-server --port "$rport" --bind 127.0.0.1 --dir "$dir" --save '' \
	--appendonly yes --appendfsync always >"$dir/redis.log" 2>&1 &
pids+=($!)
wait_for "redis-server on :$rport" redis-cli -p "$rport" ping

ports=()
next=8081
for n in 1 2 3; do
	p="$(spare_port "$next")"
	next=$((p + 1))
	ports+=("$p")
	"$herald" serve --config deploy/herald.yaml --redis "redis://127.0.0.1:$rport/0" \
		--listen "127.0.0.1:$p" --node "node$n" >"$dir/node$n.log" 2>&1 &
	pids+=($!)
done
for p in "${ports[@]}"; do
	wait_for "herald on :$p" "$herald" healthcheck --listen "127.0.0.1:$p"
done
echo "redis on :$rport; node1 :${ports[0]}, node2 :${ports[1]}, node3 :${ports[2]}"

"$herald" subscribe --url "http://127.0.0.1:${ports[1]}" -n 1 news >"$dir/got" 2>"$dir/subscribe.log" &
sub=$!
pids+=("$sub")
wait_for "the subscription on node 2" grep -q "subscribed news" "$dir/subscribe.log"
"$herald" publish --url "http://127.0.0.1:${ports[0]}" news hello
wait "$sub"
echo "node 2's subscriber got: $(cat "$dir/got")"
echo "nodes in node 3's /api/stats:"
wait_for "three nodes in /api/stats" bash -c "curl -s 127.0.0.1:${ports[2]}/api/stats | grep -q node1"
curl -s "127.0.0.1:${ports[2]}/api/stats" | grep -o '"node":"[^"]*"' | sort -u

if ! $once; then
	echo "running; try: herald subscribe --url http://127.0.0.1:${ports[1]} news"
	echo "Ctrl-C stops the nodes and Redis and deletes the data"
	wait
fi

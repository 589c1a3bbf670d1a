#!/bin/sh
# The fan-out example end to end: a state tree in a temporary directory,
# the plan submitted, agora-serve running it, agora-watch following it.
# Usage: sh examples/fanout/run.sh [WORKDIR]
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
PATH="$top/bin:$PATH"
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/agora-fanout.XXXXXX")}
state="$work/state"

agora-init "$state"
agora-submit -d "$state" "$top/examples/fanout/plan.json"
agora-serve -d "$state" -i 200ms &
serve=$!
trap 'kill $serve 2>/dev/null || :' EXIT INT TERM
status=0
agora-watch -d "$state" -t 60 fanout-1 || status=$?
kill "$serve"
wait "$serve" || :
trap - EXIT INT TERM
echo
agora-status -d "$state" fanout-1
echo
echo "sum of squares 1..12: $(cat "$state"/runs/fanout-1/items/join/1/outputs/sum)"
echo "state tree: $state"
exit "$status"

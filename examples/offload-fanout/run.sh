#!/bin/sh
# The offload-fanout example end to end: the fixture repository, a state
# tree whose dispatch executor edits it, the plan submitted and served to
# its end, then the patches, their commits in objects.git, and the run
# applied as a branch of the fixture.
# Usage: sh examples/offload-fanout/run.sh [WORKDIR]
# With SANDBOX=bwrap in the environment, both agents run under bubblewrap.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
ex=$top/examples/offload-fanout
PATH="$top/bin:$PATH"
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/agora-offload.XXXXXX")}
state=$work/state
fixture=$work/fixture
run=fanout-1

section() {
	printf '\n== %s\n' "$*"
}

sh "$ex/fixture.sh" "$fixture"
agora-init "$state"
conf() {
	git config -f "$state/agora.conf" "$1" "$2"
}
conf executor.dispatch.kind dispatch
conf executor.dispatch.repo "$fixture"
conf executor.dispatch.base main
conf queue.default.concurrency 2
conf subagent.code-edit.command "$ex/agents/code-edit"
conf subagent.code-edit.timeout 5m
conf subagent.verify.command "$ex/agents/verify"
conf subagent.verify.timeout 5m
if [ -n "${SANDBOX:-}" ]; then
	conf subagent.code-edit.sandbox "$SANDBOX"
	conf subagent.verify.sandbox "$SANDBOX"
fi

agora-submit -d "$state" "$ex/plan.json"
agora-serve -d "$state" -i 200ms &
serve=$!
trap 'kill $serve 2>/dev/null || :' EXIT INT TERM
status=0
section "agora-watch $run"
agora-watch -d "$state" -t 120 "$run" || status=$?
kill "$serve"
wait "$serve" || :
trap - EXIT INT TERM
section "agora-status $run"
agora-status -d "$state" "$run"
if [ "$status" != 0 ]; then
	echo "offload-fanout: run $run did not succeed (agora-watch exited $status); state tree: $state" >&2
	exit 1
fi

for item in edit-alpha edit-beta edit-shared; do
	section "agora-show $run $item"
	agora-show -d "$state" "$run" "$item"
done
section "agora-show --log $run verify"
agora-show -d "$state" --log "$run" verify
section "git --git-dir=objects.git log refs/agora/runs/$run"
git --git-dir="$state/objects.git" for-each-ref --format='%(refname) %(objectname:short)' "refs/agora/runs/$run/"
git --git-dir="$state/objects.git" log --stat --format='%h %an <%ae> %s' "refs/agora/runs/$run/edit-alpha"

section "agora-apply $run --repo fixture --branch agora/$run"
agora-apply -d "$state" "$run" --repo "$fixture" --branch "agora/$run"
git -C "$fixture" log --format='%h %s' "main..agora/$run"
git -C "$fixture" diff --stat main "agora/$run"
echo
echo "state tree: $state"
echo "fixture:    $fixture (branch agora/$run)"

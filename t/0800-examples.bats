#!/usr/bin/env bats
load lib/common

@test "examples/fanout runs end to end and sums the squares" {
	run -0 sh "$AGORA_ROOT/examples/fanout/run.sh" "$BATS_TEST_TMPDIR/fanout"
	assert_line --partial "run.completed status=succeeded"
	assert_line "sum of squares 1..12: 650"
	[ ! -e "$BATS_TEST_TMPDIR/fanout/state/active/fanout-1" ]
}

@test "examples/offload-fanout runs end to end: three patches, a verify, a branch of three commits" {
	local w=$BATS_TEST_TMPDIR/offload s
	run -0 --separate-stderr sh "$AGORA_ROOT/examples/offload-fanout/run.sh" "$w"
	assert_line --partial "run.completed status=succeeded counts={\"done\":4,\"failed\":0,\"skipped\":0,\"cancelled\":0}"
	assert_line "verify: shared.ts, alpha.ts and beta.ts hold their edits"
	s=$w/state
	[ ! -e "$s/active/fanout-1" ]
	for i in edit-alpha edit-beta edit-shared verify; do
		assert_equal "$(grep -c "\"event\":\"item.done\",\"item\":\"$i\"" "$s/runs/fanout-1/status.jsonl")" 1
	done
	# three patches, each the edit of its own file, each a commit on the base
	run -0 git --git-dir="$s/objects.git" for-each-ref --format='%(refname)' refs/agora/runs/fanout-1/
	assert_output "$(printf 'refs/agora/runs/fanout-1/%s\n' edit-alpha edit-beta edit-shared)"
	for f in alpha beta shared; do
		run -0 agora-show -d "$s" fanout-1 "edit-$f"
		assert_line "+++ b/$f.ts"
		assert_line "+// edited by code-edit for edit-$f"
		assert_equal "$(printf '%s\n' "$output" | grep -c '^+++ ')" 1
	done
	# verify changed nothing: done without a patch, with its report
	run -1 grep -q '"item":"verify",.*resultRef' "$s/runs/fanout-1/status.jsonl"
	assert_equal "$(cat "$s/runs/fanout-1/items/verify/1/outputs/verify.txt")" \
		"$(printf 'verified: %s\n' shared.ts alpha.ts beta.ts)"
	# the branch: the three commits, in dependency (here plan) order, on main
	run -0 git -C "$w/fixture" log --format=%s main..agora/fanout-1
	assert_output "$(printf 'fanout-1/%s\n' edit-shared edit-beta edit-alpha)"
	run -0 git -C "$w/fixture" show agora/fanout-1:alpha.ts
	assert_line 'const name = "alpha";'
	run -1 git -C "$w/fixture" grep -q '^var ' agora/fanout-1
}

@test "examples/offload-fanout/llm.conf is a configuration that accepts the plan" {
	agora-init "$D" > /dev/null
	cat "$AGORA_ROOT/examples/offload-fanout/llm.conf" >> "$D/agora.conf"
	run -0 --separate-stderr agora-validate "$AGORA_ROOT/examples/offload-fanout/plan.json"
	assert_output "$AGORA_ROOT/examples/offload-fanout/plan.json: ok (4 items)"
	run -0 sh -n "$AGORA_ROOT/examples/offload-fanout/agents/llm-edit"
}

@test "every example directory has a run.sh that this file runs" {
	for d in "$AGORA_ROOT"/examples/*/; do
		name=$(basename "$d")
		[ -f "$d/run.sh" ] || { echo "examples/$name has no run.sh"; false; }
		grep -q "examples/$name/run.sh" "$BATS_TEST_FILENAME" || { echo "examples/$name is not run"; false; }
	done
}

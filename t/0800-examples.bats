#!/usr/bin/env bats
load lib/common

@test "examples/fanout runs end to end and sums the squares" {
	run -0 sh "$AGORA_ROOT/examples/fanout/run.sh" "$BATS_TEST_TMPDIR/fanout"
	assert_line --partial "run.completed status=succeeded"
	assert_line "sum of squares 1..12: 650"
	[ ! -e "$BATS_TEST_TMPDIR/fanout/state/active/fanout-1" ]
}

@test "every example directory has a run.sh that this file runs" {
	for d in "$AGORA_ROOT"/examples/*/; do
		name=$(basename "$d")
		[ -f "$d/run.sh" ] || { echo "examples/$name has no run.sh"; false; }
		grep -q "examples/$name/run.sh" "$BATS_TEST_FILENAME" || { echo "examples/$name is not run"; false; }
	done
}

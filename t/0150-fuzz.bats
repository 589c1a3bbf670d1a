#!/usr/bin/env bats
# The input parsers under agora-helper's mutation fuzzer: a bounded run of
# each kind with a fixed seed, from the corpus of t/fixtures/fuzz (see its
# make-corpus.sh) and the suite's plans, so that the same inputs run on
# every machine. A sanitizer's abort, a leak or a broken property fails the
# test; the input is left in fuzz-KIND.case or fuzz-KIND.fail under the
# test's directory, and agora-helper fuzz-KIND ... replay FILE runs it again.
# Longer campaigns: the same commands with other seeds and counts.
load lib/common

setup() {
	common_setup
	F=$FIXTURES/fuzz
	# every case frees what it takes: LeakSanitizer says so at the end
	export ASAN_OPTIONS=detect_leaks=1
	mkdir st
	cp "$F/agora.conf" st/
}

@test "fuzz-plan: mangled plans of both formats, item by item and whole alike, normalized ones stable and loadable" {
	run -0 --separate-stderr agora-helper fuzz-plan st 1 1000 "$FIXTURES"/plans/*.json \
		"$AGORA_ROOT"/examples/*/plan.json "$F"/plans/*.json
	assert_output "ok 1000"
	assert_stderr ""
}

@test "fuzz-note: mangled signed notes, checkpoints and global log lines" {
	run -0 --separate-stderr agora-helper fuzz-note "$F/signing.pub" 1 8000 "$F"/notes/*
	assert_output "ok 8000"
	assert_stderr ""
}

@test "fuzz-control: mangled control files, and ids, actors, times, durations and lock keys" {
	run -0 --separate-stderr agora-helper fuzz-control 1 20000 "$F"/control/*
	assert_output "ok 20000"
	assert_stderr ""
}

@test "fuzz-state: mangled plan.json and status.jsonl, the chain made whole again, loaded and scheduled" {
	run -0 --separate-stderr agora-helper fuzz-state st 1 1000 "$F"/runs/*
	assert_output "ok 1000"
	assert_stderr ""
}

@test "fuzz-bundle: mangled bundles and bundle parts, verified offline" {
	run -0 --separate-stderr agora-helper fuzz-bundle "$F/signing.pub" - 1 1500 "$F"/bundles/*.json
	assert_output "ok 1500"
	assert_stderr ""
}

@test "fuzz-conf: mangled agora.conf files, loaded and used to check plans" {
	run -0 --separate-stderr agora-helper fuzz-conf st 1 3000 "$F/agora.conf" \
		"$AGORA_ROOT/examples/offload-fanout/llm.conf"
	assert_output "ok 3000"
	assert_stderr ""
}

@test "a fuzz run leaves no input behind, and one input replays alone" {
	run -0 agora-helper fuzz-plan st 7 50 "$FIXTURES/plans/valid.json"
	assert_output "ok 50"
	[ -z "$(ls -d fuzz-* 2>/dev/null)" ]
	run -0 agora-helper fuzz-plan st replay "$FIXTURES/plans/cycle.json"
	assert_output "ok 1"
	run -0 agora-helper fuzz-state st replay "$F/runs/r5"
	assert_output "ok 1"
}

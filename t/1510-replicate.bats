#!/usr/bin/env bats
# agora-replicate: the state tree copied with rsync in the safe order; the
# replica verifies on its own, and proves its log consistent with the source's.
load lib/common

setup() {
	common_setup
	agora_init
	PUB=$D/keys/signing.pub
	REP=$BATS_TEST_TMPDIR/replica
}

teardown() {
	touch "$BATS_TEST_TMPDIR/stop"
	[ -z "${TICKER:-}" ] || wait "$TICKER" || true
	common_teardown
}

# submit_run ID: four items, two of them after the others, each a moment long.
submit_run() {
	plan "p-$1.json" "$1" "$(item a 'sleep 0.05'),$(item b 'sleep 0.05'),$(item c true '["a","b"]'),$(item d 'sleep 0.05' '["c"]')"
	agora-submit "p-$1.json" > /dev/null
}

# verify_replica: every sealed run of the replica verifies from the replica
# alone, and so does its global log.
verify_replica() {
	local r n=0
	for r in $(ls "$REP/runs"); do
		grep -q '"event":"run.sealed"' "$REP/runs/$r/status.jsonl" || continue
		run -0 --separate-stderr agora-audit -d "$REP" --out "b-$r.json" "$r" || { echo "$output $stderr"; false; }
		run -0 agora-verify --key "$REP/keys/signing.pub" --objects "$REP/objects.git" \
			--anchor "dir:$REP/audit/anchors/local" "b-$r.json"
		n=$((n + 1))
	done
	run -0 agora-verify --key "$REP/keys/signing.pub" --log "$REP" ${1:+--since "$1"}
	SEALED=$n
}

@test "a live tree replicated again and again: the replica verifies at each step, consistent with the source" {
	local i
	for i in 1 2 3; do
		submit_run "r$i"
	done
	( while [ ! -e "$BATS_TEST_TMPDIR/stop" ]; do
		agora-reconcile -d "$D" > /dev/null 2>&1
		sleep 0.02
	done ) &
	TICKER=$!
	for i in 1 2 3 4 5 6; do
		[ "$i" -gt 3 ] || submit_run "s$i"
		run -0 --separate-stderr agora-replicate "$REP"
		assert_stderr ""
		verify_replica "$( [ -f prev.cp ] && echo prev.cp)"
		[ ! -f "$REP/audit/checkpoint" ] || cp "$REP/audit/checkpoint" prev.cp
	done
	wait_for "[ -z \"\$(ls '$D/active')\" ]"
	touch "$BATS_TEST_TMPDIR/stop"
	wait "$TICKER"
	TICKER=
	agora-replicate "$REP"
	verify_replica prev.cp
	assert_equal "$SEALED" 6
	# the replica's log is the source's, and each extends the other's checkpoint
	run -0 agora-verify --key "$PUB" --log "$REP" --since "$D/audit/checkpoint"
	run -0 agora-verify --key "$PUB" --log "$D" --since "$REP/audit/checkpoint"
	cmp "$D/audit/log.jsonl" "$REP/audit/log.jsonl"
}

@test "a global checkpoint replaced at the same size and mtime second still reaches the replica" {
	submit_run r
	drive r
	agora-replicate "$REP"
	touch -r "$D/audit/checkpoint" then.ref
	submit_run s
	drive s
	# as rsync's quick check sees a checkpoint rewritten within the same second
	touch -r then.ref "$D/audit/checkpoint"
	[ "$(stat -c %s "$D/audit/checkpoint")" = "$(stat -c %s "$REP/audit/checkpoint")" ]
	agora-replicate "$REP"
	cmp "$D/audit/checkpoint" "$REP/audit/checkpoint"
	verify_replica
	assert_equal "$SEALED" 2
}

@test "the private key, locks, leases and temporary files stay behind; the public key goes" {
	submit_run r
	drive r
	agora-replicate "$REP"
	[ -f "$REP/keys/signing.pub" ]
	[ ! -e "$REP/keys/signing.key" ]
	[ ! -e "$REP/locks" ]
	[ ! -e "$REP/tick.lock" ]
	[ ! -e "$REP/wake" ]
	[ ! -e "$REP/inbox/tmp" ]
	run -0 find "$REP" -name lease -o -name '.*.tmp*'
	assert_output ""
	cmp "$D/runs/r/status.jsonl" "$REP/runs/r/status.jsonl"
	cmp "$D/runs/r/checkpoint" "$REP/runs/r/checkpoint"
}

@test "a source rewritten after replication does not rewrite the replica's history" {
	submit_run r
	drive r
	agora-replicate "$REP"
	cp "$REP/runs/r/status.jsonl" kept.jsonl
	# the source's log rewritten (same length), and cut
	sed -i 's/"status":"done"/"status":"DONE"/' "$D/runs/r/status.jsonl"
	chmod u+w "$D/runs/r/checkpoint"
	echo forged > "$D/runs/r/checkpoint"
	agora-replicate "$REP"
	cmp kept.jsonl "$REP/runs/r/status.jsonl"
	run -1 agora-verify --key "$PUB" --log "$D"
	run -0 agora-verify --key "$PUB" --log "$REP"
	truncate -s 100 "$D/runs/r/status.jsonl"
	agora-replicate "$REP"
	cmp kept.jsonl "$REP/runs/r/status.jsonl"
}

@test "agora-replicate of a directory that is not a state tree exits 100" {
	mkdir nothing
	run -100 --separate-stderr agora-replicate -d nothing "$REP"
	assert_stderr "agora-replicate: 'nothing' is not an agora state directory"
	run -100 --separate-stderr agora-replicate
	assert_stderr "usage: agora-replicate [-d dir] dest"
}

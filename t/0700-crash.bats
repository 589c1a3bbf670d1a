#!/usr/bin/env bats
# Crash safety: kill -9 at each named point, re-run reconcile, and reach
# the same final state as a run that never crashed. Every task's side
# effect happens exactly once.
load lib/common

scenario() { # a state tree in $1 with run r submitted: a -> b, and c beside them
	local dir=$1 fx=$2
	agora-init "$dir" >/dev/null
	git config -f "$dir/agora.conf" agora.backoff 0
	plan "$BATS_TEST_TMPDIR/p.json" r "$(item a "echo a >> $fx" '[]' '["k"]'),$(item b "echo b >> $fx" '["a"]' '["k"]'),$(item c "echo c >> $fx")"
	agora-submit -d "$dir" "$BATS_TEST_TMPDIR/p.json" >/dev/null
}

final_state() { # the outcome, each item's last status, and the side effects
	outcome r
	for i in a b c; do echo "$i $(item_status r "$i")"; done
	sort "$1"
	ls "$D/active"
}

crash_at() { # tick with the crash point armed until it fires, then run to the end
	local point=$1 deadline=$((SECONDS + 30)) rc
	scenario "$D" "$BATS_TEST_TMPDIR/effects"
	[ -z "$2" ] || eval "$2"
	while :; do
		rc=0
		AGORA_TEST_CRASH=$point agora-reconcile -d "$D" >/dev/null 2>&1 || rc=$?
		[ "$rc" -eq 137 ] && break
		[ "$SECONDS" -lt "$deadline" ] || { echo "crash point $point never reached"; return 1; }
		[ -e "$D/active/r" ] || [ ! -e "$D/runs/r" ] || { echo "run ended before $point"; return 1; }
		sleep 0.02
	done
	drive r
}

expected() {
	local saved=$D
	D=$BATS_TEST_TMPDIR/clean
	scenario "$D" "$BATS_TEST_TMPDIR/clean-effects"
	drive r
	final_state "$BATS_TEST_TMPDIR/clean-effects"
	D=$saved
}

check_point() {
	crash_at "$1" "$2"
	run -0 final_state "$BATS_TEST_TMPDIR/effects"
	assert_output "$(expected)"
	assert_output --partial "$(printf 'a\nb\nc')"
	# the log still replays: its hash chain is whole
	run -0 agora-status r
}

@test "crash at ingest-run (run directory made, not yet active)" { check_point ingest-run; }
@test "crash at ingest-active (active, inbox entry not yet moved)" { check_point ingest-active; }
@test "crash at ingest-done (inbox entry moved, nothing else done)" { check_point ingest-done; }
@test "crash at control-log (a directive logged, its effect not yet)" {
	check_point control-log 'agora-ctl -d "$D" r ELEVATE c 5 >/dev/null 2>&1 || { agora-reconcile -d "$D"; agora-ctl -d "$D" r ELEVATE c 5; }'
	assert_equal "$(grep -c '"event":"control.applied"' "$D/runs/r/status.jsonl")" 1
}
@test "crash at fire-spec (spec.json written, item.running not logged)" { check_point fire-spec; }
@test "crash at fire-log (item.running logged, supervisor not started)" {
	check_point fire-log
	run -0 grep -c '"reason":"not started"' "$D/runs/r/status.jsonl"
}
@test "crash at fire-spawn (a supervisor started, the tick died)" { check_point fire-spawn; }
@test "crash at fire-offer (serve's resident holds attempts whose intent is not yet durable)" {
	scenario "$D" "$BATS_TEST_TMPDIR/effects"
	run -137 env AGORA_TEST_CRASH=fire-offer agora-serve -d "$D"
	# the resident saw serve go: it drops what it held, and starts none of it
	wait_for '! pgrep -f "agora-exec -d $D -r" >/dev/null'
	[ ! -e "$BATS_TEST_TMPDIR/effects" ]
	[ ! -e "$D/runs/r/items/a/1/result.json" ] && [ ! -s "$D/runs/r/items/a/1/lease" ]
	drive r
	run -0 final_state "$BATS_TEST_TMPDIR/effects"
	assert_output "$(expected)"
	run -0 grep -c '"reason":"not started"' "$D/runs/r/status.jsonl"
	assert_output 2
	run -0 agora-status r
}
@test "crash at reap-log (an attempt's end logged, the tick died)" { check_point reap-log; }
@test "crash at complete-log (run.completed logged, still active)" { check_point complete-log; }
@test "crash at complete-active (removed from active/)" { check_point complete-active; }
@test "crash at seal-checkpoint (run checkpoint written)" { check_point seal-checkpoint; }
@test "crash at seal-log (global log entry appended)" { check_point seal-log; }
@test "crash at seal-global (global checkpoint written)" { check_point seal-global; }
@test "crash at seal-event (run.sealed logged, still active)" { check_point seal-event; }

@test "crash at ingest-reject (.err written, plan not yet moved)" {
	agora_init
	echo '{"items": 3}' > "$D/inbox/new/0000000001.000001.1,bad"
	run -137 env AGORA_TEST_CRASH=ingest-reject agora-reconcile
	[ -f "$D/inbox/new/0000000001.000001.1,bad" ]
	run -0 agora-reconcile
	[ -f "$D/inbox/rejected/0000000001.000001.1,bad" ]
	run -0 cat "$D/inbox/rejected/0000000001.000001.1,bad.err"
	assert_output "inbox/new/0000000001.000001.1,bad: \$.items: expected array, got integer"
	[ -z "$(ls "$D/inbox/new")" ]
}

@test "a torn last line in status.jsonl is cut off and the run goes on" {
	scenario "$D" "$BATS_TEST_TMPDIR/effects"
	agora-reconcile
	printf '{"seq":99,"torn' >> "$D/runs/r/status.jsonl"
	drive r
	assert_equal "$(outcome r)" succeeded
	run ! grep -q torn "$D/runs/r/status.jsonl"
}

@test "a supervisor killed with -9 leads to a new attempt, reason 'lease lost'" {
	agora_init
	T=$BATS_TEST_TMPDIR
	hang_first w
	kill -9 "$sup"
	drive r
	assert_equal "$(outcome r)" succeeded
	run -0 grep '"event":"item.retrying"' "$D/runs/r/status.jsonl"
	assert_output --partial '"reason":"lease lost"'
	run -0 cat "$T/tries"
	assert_output "$(printf '1\n2')"
	# the orphaned worker went with its supervisor
	wait_for "! kill -0 $worker 2>/dev/null" 10
}

@test "a lock lives exactly as long as its supervisor, even after kill -9" {
	agora_init
	plan p.json r "$(item holder "sleep 1000" '[]' '["the/lock"]')"
	agora-submit p.json
	agora-reconcile
	wait_for "[ -s $D/runs/r/items/holder/1/lease ]"
	run ! flock -n "$D/locks/the%2Flock" true
	attempt_pids r holder 1
	kill -9 "$sup"
	wait_for "flock -n $D/locks/the%2Flock true" 10
}

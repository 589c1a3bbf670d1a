#!/usr/bin/env bats
# agora-watch: follows a run's status.jsonl until the run ends; one line per
# event when stdout is not a terminal, --json for the raw lines, a live
# table on a terminal. Exit 0 all done, 1 anything not done, 99 on -t.
load lib/common

# history_lines RUN: the log up to run.completed; watch shows no more (not run.sealed)
history_lines() {
	sed '/"event":"run.completed"/q' "$D/runs/$1/status.jsonl"
}

# field LINE KEY: a plain field of one JSON line.
field() {
	printf '%s\n' "$1" | sed -n "s/.*\"$2\":\"\\{0,1\\}\\([^\",]*\\)\"\\{0,1\\}[,}].*/\\1/p"
}

# on_tty CMD: run CMD with a terminal of 24x80 as its stdout (util-linux
# script), and strip the carriage returns.
on_tty() {
	run script -qec "stty rows 24 cols 80; $*" /dev/null
	output=${output//$'\r'/}
	IFS=$'\n' read -r -d '' -a lines <<< "$output" || true
}

@test "watch prints one line per event when stdout is not a terminal" {
	agora_init agora.maxAttempts 1
	plan p.json r "$(item a "exit 3"),$(item b true '["a"]'),$(item c true)"
	agora-submit p.json >/dev/null
	drive r
	run -1 agora-watch r
	assert_equal "${#lines[@]}" "$(history_lines r | wc -l)"
	# each line: seq, time, event, item, then the other fields as key=value
	i=0
	while IFS= read -r l; do
		item=$(field "$l" item)
		assert_line --index $i --regexp "^$i $(field "$l" at) $(field "$l" event)${item:+ $item}( |\$)"
		i=$((i + 1))
	done < <(history_lines r)
	assert_line --partial ' run.submitted actor=human:'
	assert_line --regexp '^[0-9]+ [-0-9T:.Z]+ item.failed a status=failed attempt=1 exit=3 reason="exit 3"$'
	assert_line --regexp "^[0-9]+ [-0-9T:.Z]+ item.skipped b status=skipped reason=\"dependency 'a' failed\" blockedBy=a\$"
	assert_line --regexp '^[0-9]+ [-0-9T:.Z]+ item.done c status=done attempt=1 exit=0$'
	assert_line --index $((i - 1)) --regexp '^[0-9]+ [-0-9T:.Z]+ run.completed status=failed counts=\{"done":1,"failed":1,"skipped":1,"cancelled":0\}$'
	refute_output --partial prev=
}

@test "watch follows a live run and exits 0 when every item is done" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(hold a),$(item b true '["a"]')"
	agora-submit p.json >/dev/null
	tick
	agora-watch r > "$T/out" 2> "$T/err" &
	w=$!
	wait_for "grep -q ' item.running a ' $T/out"
	# it has not ended: the run has not
	kill -0 "$w"
	touch "$T/a.release"
	drive r
	rc=0
	wait "$w" || rc=$?
	assert_equal "$rc" 0
	run -0 cat "$T/out"
	assert_equal "${#lines[@]}" "$(history_lines r | wc -l)"
	assert_line --index $((${#lines[@]} - 1)) --partial " run.completed status=succeeded "
	run -0 cat "$T/err"
	assert_output ""
}

@test "watch --json prints the raw status.jsonl lines" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(hold a),$(item b true '["a"]')"
	agora-submit p.json >/dev/null
	tick
	agora-watch --json r > "$T/out" &
	w=$!
	touch "$T/a.release"
	drive r
	rc=0
	wait "$w" || rc=$?
	assert_equal "$rc" 0
	history_lines r | cmp "$T/out" -
	run -0 agora-watch --json r
	assert_output "$(history_lines r)"
}

@test "watch exits 1 when an item failed" {
	agora_init agora.maxAttempts 1
	plan p.json r "$(item a "exit 3"),$(item b true)"
	agora-submit p.json >/dev/null
	drive r
	run -1 agora-watch r
	run -1 agora-watch --json r
}

@test "watch exits 1 when an item was skipped or cancelled" {
	agora_init
	plan p.json r "$(hold a),$(item b true '["a"]'),$(item c true)"
	agora-submit p.json >/dev/null
	tick
	agora-ctl r CANCEL a
	drive r
	assert_equal "$(item_status r a)" cancelled
	assert_equal "$(item_status r b)" skipped
	assert_equal "$(item_status r c)" done
	run -1 agora-watch r
	assert_line --index $((${#lines[@]} - 1)) --partial ' run.completed status=failed counts={"done":1,"failed":0,"skipped":1,"cancelled":1}'
}

@test "watch exits 1 when the run was cancelled" {
	agora_init
	plan p.json r "$(hold a),$(item b true '["a"]')"
	agora-submit p.json >/dev/null
	tick
	agora-ctl r CANCEL
	drive r
	run -1 agora-watch r
	assert_line --index $((${#lines[@]} - 1)) --partial ' run.completed status=cancelled '
}

@test "watch -t exits 99 when the run has not ended in time" {
	agora_init
	plan p.json r "$(hold a)"
	agora-submit p.json >/dev/null
	tick
	run --separate-stderr -99 agora-watch -t 0.3 r
	assert_equal "$stderr" "agora-watch: timed out waiting for run 'r'"
	# what happened so far was printed
	assert_line --index 0 --partial ' run.submitted '
	assert_line --index 2 --partial ' item.running a '
	run --separate-stderr -99 agora-watch -t 200ms --json r
	assert_equal "$stderr" "agora-watch: timed out waiting for run 'r'"
	assert_output "$(cat "$D/runs/r/status.jsonl")"
	touch "$BATS_TEST_TMPDIR/a.release"
}

@test "watch -t with a run that ends in time exits 0" {
	agora_init
	plan p.json r "$(item a true)"
	agora-submit p.json >/dev/null
	drive r
	run -0 agora-watch -t 30 r
}

@test "watch refuses an unknown run, exit 100" {
	agora_init
	run -100 agora-watch x
	assert_output "agora-watch: unknown run 'x'"
	run -100 agora-watch -t 5 x
	assert_output "agora-watch: unknown run 'x'"
	run -100 agora-watch ../x
	assert_output "agora-watch: invalid id '../x': ids match [A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}"
}

@test "watch usage errors exit 100" {
	agora_init
	run -100 agora-watch
	assert_output "usage: agora-watch [--json] [-d dir] [-t seconds] run"
	run -100 agora-watch -t soon r
	assert_output "usage: agora-watch [--json] [-d dir] [-t seconds] run"
	run -100 agora-watch r s
	assert_output "usage: agora-watch [--json] [-d dir] [-t seconds] run"
}

@test "watch waits for a run that is still in the inbox" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(item a true)"
	agora-submit p.json >/dev/null
	agora-watch -t 60 r > "$T/out" 2> "$T/err" &
	w=$!
	# no tick yet: it waits (asleep in its poll), and prints nothing
	wait_for "grep -q '^State:.*sleeping' /proc/$w/status"
	kill -0 "$w"
	[ ! -s "$T/out" ]
	drive r
	rc=0
	wait "$w" || rc=$?
	assert_equal "$rc" 0
	run -0 cat "$T/out"
	assert_line --index 0 --partial ' run.submitted '
	assert_equal "${#lines[@]}" "$(history_lines r | wc -l)"
	run -0 cat "$T/err"
	assert_output ""
}

@test "watch -t on a run that stays in the inbox exits 99" {
	agora_init
	plan p.json r "$(item a true)"
	agora-submit p.json >/dev/null
	run -99 agora-watch -t 0.2 r
	assert_output "agora-watch: timed out waiting for run 'r'"
}

@test "on a terminal, watch draws a progress bar and a table of the items" {
	agora_init agora.maxAttempts 1
	plan p.json r "$(item a true),$(item b "exit 4"),$(item c true '["b"]')"
	agora-submit p.json >/dev/null
	drive r
	on_tty agora-watch -d "$D" r
	assert_equal "$status" 1
	# the last frame, after the last clear-screen
	frame=${output##*$'\033[H\033[J'}
	assert_equal "$frame" "r  failed
[$(printf '#%.0s' $(seq 50))] 3/3
pending 0  ready 0  running 0  done 1  failed 1  skipped 1  cancelled 0

$(printf '%-32s %-10s %-7s %s' ITEM STATE ATTEMPT REASON)
$(printf '%-32s %-10s %-7s %s' b failed 1 'exit 4')
$(printf '%-32s %-10s %-7s %s' c skipped 0 "dependency 'b' failed")
$(printf '%-32s %-10s %-7s %s' a done 1 '')"
	# on a terminal, no event lines
	refute_output --partial run.submitted
}

@test "on a terminal, a live run shows its progress, and pending items too" {
	agora_init
	plan p.json r "$(item a true),$(hold h),$(item b true '["h"]')"
	agora-submit p.json >/dev/null
	wait_for 'agora-reconcile; [ "$(item_status r a)" = done ]'
	on_tty agora-watch -d "$D" -t 0.3 r
	assert_equal "$status" 99
	frame=${output##*$'\033[H\033[J'}
	assert_equal "$frame" "r  running
[$(printf '#%.0s' $(seq 16))$(printf '.%.0s' $(seq 34))] 1/3
pending 1  ready 0  running 1  done 1  failed 0  skipped 0  cancelled 0

$(printf '%-32s %-10s %-7s %s' ITEM STATE ATTEMPT REASON)
$(printf '%-32s %-10s %-7s %s' h running 1 '')
$(printf '%-32s %-10s %-7s %s' b pending 0 '')
$(printf '%-32s %-10s %-7s %s' a done 1 '')
agora-watch: timed out waiting for run 'r'"
	touch "$BATS_TEST_TMPDIR/h.release"
}

@test "on a terminal, a run with more items than rows says how many more" {
	agora_init
	items=$(for i in $(seq 30); do printf '%s,' "$(item "i$i" true)"; done)
	plan p.json r "${items%,}"
	agora-submit p.json >/dev/null
	drive r
	on_tty agora-watch -d "$D" r
	assert_equal "$status" 0
	frame=${output##*$'\033[H\033[J'}
	# 24 rows: 5 lines of header, 16 items, one line to say the rest
	assert_line --partial "] 30/30"
	assert_equal "$(printf '%s\n' "$frame" | wc -l)" 22
	assert_equal "${frame##*$'\n'}" "... and 14 more"
}

@test "watch stops at a broken hash chain, exit 100" {
	agora_init
	plan p.json r "$(item a true),$(item b true '["a"]')"
	agora-submit p.json >/dev/null
	drive r
	sed -i '2s/"ready"/"READY"/' "$D/runs/r/status.jsonl"
	run --separate-stderr -100 agora-watch --json r
	assert_equal "$stderr" "agora-watch: $D/runs/r/status.jsonl: line 3: broken hash chain"
	assert_output "$(head -n 2 "$D/runs/r/status.jsonl")"
}

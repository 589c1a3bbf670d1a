#!/usr/bin/env bats
# agora-ctl and the control files: each directive's effect, its events, and
# that it applies exactly once however often reconcile re-reads the file.
load lib/common

# hold ID [DEPS] [EXTRA]: an item that marks each attempt started, then
# waits until the test releases it (the attempt's own release file or ID.release).
hold() {
	local t=$BATS_TEST_TMPDIR
	item "$1" "echo \$AGORA_ATTEMPT >> $t/$1.started; until [ -e $t/$1.release ] || [ -e $t/$1.\$AGORA_ATTEMPT.release ]; do sleep 0.05; done; echo \$AGORA_ATTEMPT >> $t/$1.ran" "${2:-[]}" '[]' "$3"
}

# started ID [N]: wait until attempt N (default 1) of ID has started.
started() {
	wait_for "grep -qx '${2:-1}' '$BATS_TEST_TMPDIR/$1.started' 2>/dev/null"
}

# ticks N: N ticks in a row.
ticks() {
	local i
	for i in $(seq "$1"); do
		tick || return 1
	done
}

# crash_at POINT: tick until a tick dies at the named crash point.
crash_at() {
	local deadline=$((SECONDS + 30)) rc=0
	until [ "$rc" = 137 ]; do
		[ "$SECONDS" -lt "$deadline" ] || { echo "crash point $1 never reached" >&2; return 1; }
		rc=0
		AGORA_TEST_CRASH=$1 agora-reconcile -d "$D" >/dev/null 2>&1 || rc=$?
	done
}

# count RUN PATTERN: how many lines of the run's log match.
count() {
	grep -c -- "$2" "$D/runs/$1/status.jsonl" || true
}

# ev RUN EVENT: the log lines of one event.
ev() {
	grep -- "\"event\":\"$2\"" "$D/runs/$1/status.jsonl"
}

@test "agora-ctl appends 'VERB ARGS @actor' to runs/RUN/control, default actor human:<user>" {
	agora_init
	plan p.json r "$(hold a)"
	agora-submit p.json >/dev/null
	tick
	run -0 agora-ctl r PAUSE
	assert_output ""
	run -0 agora-ctl --actor ops:alice r ELEVATE a 7
	assert_output ""
	run -0 cat "$D/runs/r/control"
	assert_output "$(printf 'PAUSE @human:%s\nELEVATE a 7 @ops:alice' "$(id -un)")"
}

@test "PAUSE stops new fires, logs run.paused; RESUME logs run.resumed and the run goes on" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(hold a),$(item b "touch $T/b.ran" '["a"]')"
	agora-submit p.json >/dev/null
	tick
	started a
	agora-ctl --actor ops r PAUSE
	tick
	run -0 ev r control.applied
	assert_output --partial '"event":"control.applied","directive":"PAUSE","actor":"ops","offset":11,'
	assert_equal "$(count r '"event":"run.paused"')" 1
	touch "$T/a.release"
	wait_for 'tick; [ "$(item_status r a)" = done ]'
	# b is ready, and stays so however many ticks go by
	ticks 10
	assert_equal "$(item_status r b)" ready
	[ ! -e "$T/b.ran" ]
	assert_equal "$(count r '"event":"item.running","item":"b"')" 0
	agora-ctl --actor ops r RESUME
	drive r
	assert_equal "$(outcome r)" succeeded
	[ -e "$T/b.ran" ]
	run -0 events r
	assert_output "$(printf '%s\n' run.submitted item.ready item.running control.applied run.paused \
		item.done item.ready control.applied run.resumed item.running item.done run.completed \
		run.sealed)"
}

@test "a PAUSE written by hand, porki style, applies with actor 'file'" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(hold a),$(item b true '["a"]')"
	agora-submit p.json >/dev/null
	tick
	echo PAUSE >> "$D/runs/r/control"
	tick
	run -0 ev r control.applied
	assert_output --partial '"directive":"PAUSE","actor":"file","offset":6,'
	assert_equal "$(count r '"event":"run.paused"')" 1
	touch "$T/a.release"
	wait_for 'tick; [ "$(item_status r a)" = done ]'
	ticks 5
	assert_equal "$(item_status r b)" ready
	echo "resume" >> "$D/runs/r/control"
	drive r
	assert_equal "$(outcome r)" succeeded
	run -0 ev r control.applied
	assert_line --index 1 --partial '"directive":"RESUME","actor":"file","offset":13,'
}

@test "every directive applies exactly once, however often the file is re-read" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(hold a),$(item b true '["a"]')"
	agora-submit p.json >/dev/null
	tick
	agora-ctl r PAUSE
	agora-ctl r RESUME
	agora-ctl r PAUSE
	echo "ELEVATE b 5" >> "$D/runs/r/control"
	echo "bogus" >> "$D/runs/r/control"
	ticks 20
	assert_equal "$(count r '"event":"control.applied"')" 4
	assert_equal "$(count r '"event":"control.rejected"')" 1
	# one pause and one resume were logged in all: the last word is PAUSE
	assert_equal "$(count r '"event":"run.paused"')" 1
	assert_equal "$(count r '"event":"run.resumed"')" 0
	size=$(stat -c %s "$D/runs/r/control")
	run -0 ev r 'control\.[a-z]*'
	assert_line --index 4 --partial "\"offset\":$size,"
	agora-ctl r RESUME
	touch "$T/a.release"
	drive r
	assert_equal "$(count r '"event":"control.applied"')" 5
	assert_equal "$(count r '"event":"control.rejected"')" 1
	assert_equal "$(outcome r)" succeeded
}

@test "a line still being written (no newline yet) waits for its newline" {
	agora_init
	plan p.json r "$(hold a)"
	agora-submit p.json >/dev/null
	tick
	printf 'PAU' >> "$D/runs/r/control"
	ticks 3
	assert_equal "$(count r '"event":"control\.')" 0
	printf 'SE\n' >> "$D/runs/r/control"
	tick
	run -0 ev r control.applied
	assert_output --partial '"directive":"PAUSE","actor":"file","offset":6,'
	touch "$BATS_TEST_TMPDIR/a.release"
}

@test "the global control file pauses every run, and RESUME resumes them all" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p1.json r1 "$(hold a),$(item b true '["a"]')"
	plan p2.json r2 "$(hold c),$(item d true '["c"]')"
	agora-submit p1.json >/dev/null && agora-submit p2.json >/dev/null
	tick
	run -0 agora-ctl -g PAUSE
	assert_output ""
	run -0 cat "$D/control"
	assert_output "PAUSE @human:$(id -un)"
	tick
	for r in r1 r2; do
		run -0 ev $r control.applied
		assert_output --partial '"directive":"PAUSE","scope":"global","actor":"human:'
		run -0 ev $r run.paused
		assert_output --partial '"event":"run.paused","reason":"global",'
	done
	touch "$T/a.release" "$T/c.release"
	wait_for 'tick; [ "$(item_status r1 a)" = done ] && [ "$(item_status r2 c)" = done ]'
	ticks 5
	assert_equal "$(item_status r1 b)" ready
	assert_equal "$(item_status r2 d)" ready
	echo RESUME >> "$D/control"
	drive r1 && drive r2
	assert_equal "$(outcome r1)" succeeded
	assert_equal "$(outcome r2)" succeeded
	for r in r1 r2; do
		assert_equal "$(count $r '"event":"run.paused"')" 1
		assert_equal "$(count $r '"event":"run.resumed"')" 1
		assert_equal "$(count $r '"scope":"global"')" 2
	done
}

@test "a run submitted while the global file says PAUSE starts paused" {
	agora_init
	agora-ctl -g PAUSE
	plan p.json r "$(item a true)"
	agora-submit p.json >/dev/null
	ticks 5
	assert_equal "$(item_status r a)" ready
	run -0 ev r run.submitted
	assert_output --partial '"globalOffset":'"$(stat -c %s "$D/control")"',"globalPaused":true,'
	# the PAUSE before its submission is not applied again to it
	assert_equal "$(count r '"event":"control.applied"')" 0
	agora-ctl -g RESUME
	drive r
	assert_equal "$(outcome r)" succeeded
}

@test "the global control file takes only PAUSE and RESUME" {
	agora_init
	run -100 agora-ctl -g CANCEL
	assert_output "agora-ctl: the global control file takes only PAUSE and RESUME"
	run -0 cat "$D/control"
	assert_output ""
	# a hand-written one is rejected in every run, once
	plan p.json r "$(hold a)"
	agora-submit p.json >/dev/null
	tick
	echo "CANCEL" >> "$D/control"
	ticks 3
	run -0 ev r control.rejected
	assert_output --partial '"directive":"CANCEL","actor":"file","reason":"the global control file takes only PAUSE and RESUME","globalOffset":7,'
	assert_equal "$(count r '"event":"control.rejected"')" 1
	assert_equal "$(item_status r a)" running
	touch "$BATS_TEST_TMPDIR/a.release"
}

@test "CANCEL of a run: ready and pending items are cancelled, a running one killed, run.cancelled" {
	agora_init queue.default.concurrency 1
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(hold a),$(item b "touch $T/b.ran"),$(item c "touch $T/c.ran" '["a"]')"
	agora-submit p.json >/dev/null
	tick
	started a
	assert_equal "$(item_status r b)" ready
	assert_equal "$(count r '"item":"c"')" 0
	run -0 agora-ctl --actor ops r CANCEL
	drive r
	assert_equal "$(outcome r)" cancelled
	assert_equal "$(item_status r a)" cancelled
	assert_equal "$(item_status r b)" cancelled
	assert_equal "$(item_status r c)" cancelled
	[ ! -e "$T/a.ran" ] && [ ! -e "$T/b.ran" ] && [ ! -e "$T/c.ran" ]
	run -0 ev r control.applied
	assert_output --partial '"directive":"CANCEL","actor":"ops",'
	assert_equal "$(count r '"event":"run.cancelled"')" 1
	run -0 grep '"event":"item.cancelled","item":"a"' "$D/runs/r/status.jsonl"
	assert_output --partial '"status":"cancelled","attempt":1,"reason":"cancelled","signal":'
	run -0 grep -o '"counts":{[^}]*}' "$D/runs/r/status.jsonl"
	assert_output '"counts":{"done":0,"failed":0,"skipped":0,"cancelled":3}'
}

@test "CANCEL kills a running item's whole process group, grandchild too" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(item a "sleep 1000 & echo \$! > $T/grandchild; touch $T/a.started; wait")"
	agora-submit p.json >/dev/null
	tick
	wait_for "[ -e $T/a.started ] && [ -s $T/grandchild ]"
	pid=$(cat "$T/grandchild")
	kill -0 "$pid"
	agora-ctl r CANCEL a
	drive r
	assert_equal "$(item_status r a)" cancelled
	wait_for "! kill -0 $pid 2>/dev/null" 10
	# the worker is not retried: one attempt, no item.retrying
	assert_equal "$(count r '"event":"item.running"')" 1
	assert_equal "$(count r '"event":"item.retrying"')" 0
}

@test "CANCEL of one item cancels it and skips its dependents; the rest runs" {
	agora_init queue.default.concurrency 1
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(hold a),$(item b "touch $T/b.ran"),$(item c "touch $T/c.ran" '["b"]'),$(item d "touch $T/d.ran")"
	agora-submit p.json >/dev/null
	tick
	started a
	agora-ctl r CANCEL b
	tick
	assert_equal "$(item_status r b)" cancelled
	assert_equal "$(item_status r c)" skipped
	assert_equal "$(count r '"event":"run.cancelled"')" 0
	run -0 grep '"event":"item.cancelled","item":"b"' "$D/runs/r/status.jsonl"
	assert_output --partial '"status":"cancelled","reason":"cancelled",'
	run -0 grep '"event":"item.skipped","item":"c"' "$D/runs/r/status.jsonl"
	assert_output --partial '"reason":"dependency '"'b'"' cancelled","blockedBy":"b",'
	touch "$T/a.release"
	drive r
	assert_equal "$(item_status r a)" done
	assert_equal "$(item_status r d)" done
	[ ! -e "$T/b.ran" ] && [ ! -e "$T/c.ran" ] && [ -e "$T/d.ran" ]
	assert_equal "$(outcome r)" failed
}

@test "CANCEL of a finished item, or of a cancelled run, is rejected with its reason" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(item a true),$(hold h)"
	agora-submit p.json >/dev/null
	wait_for 'tick; [ "$(item_status r a)" = done ]'
	agora-ctl r CANCEL a
	tick
	run -0 ev r control.rejected
	assert_output --partial '"directive":"CANCEL","item":"a","actor":"human:'
	assert_output --partial '"reason":"item '"'a'"' is already done",'
	agora-ctl r CANCEL
	agora-ctl r CANCEL
	tick
	run -0 ev r control.rejected
	assert_line --index 1 --partial '"directive":"CANCEL","actor":"human:'
	assert_line --index 1 --partial '"reason":"run is already cancelled",'
	drive r
	assert_equal "$(outcome r)" cancelled
}

@test "RETRY, DAGMan-rescue style: a failed item and its skipped dependents run again" {
	agora_init agora.maxAttempts 1
	T=$BATS_TEST_TMPDIR
	# a fails until the cause is fixed; h keeps the run open meanwhile
	plan p.json r "$(item a "echo x >> $T/a.tries; [ -e $T/fixed ]"),$(item b "echo x >> $T/b.tries" '["a"]'),$(item c "echo x >> $T/c.tries" '["b"]'),$(item e "echo x >> $T/e.tries"),$(hold h)"
	agora-submit p.json >/dev/null
	wait_for 'tick; [ "$(item_status r a)" = failed ] && [ "$(item_status r e)" = done ]'
	assert_equal "$(item_status r b)" skipped
	assert_equal "$(item_status r c)" skipped
	touch "$T/fixed"
	run -0 agora-ctl r RETRY a
	tick
	run -0 ev r control.applied
	assert_output --partial '"directive":"RETRY","item":"a",'
	touch "$T/h.release"
	drive r
	assert_equal "$(outcome r)" succeeded
	assert_equal "$(wc -l < "$T/a.tries")" 2
	assert_equal "$(wc -l < "$T/b.tries")" 1
	assert_equal "$(wc -l < "$T/c.tries")" 1
	# what was done stays done: e ran once
	assert_equal "$(wc -l < "$T/e.tries")" 1
	run -0 grep '"event":"item.done","item":"a"' "$D/runs/r/status.jsonl"
	assert_output --partial '"attempt":2,'
	run -0 grep -o '"counts":{[^}]*}' "$D/runs/r/status.jsonl"
	assert_output '"counts":{"done":5,"failed":0,"skipped":0,"cancelled":0}'
	# applied once: no third try however many ticks went by
	assert_equal "$(count r '"directive":"RETRY"')" 1
}

@test "RETRY of a cancelled item runs it again" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(hold a),$(item b "touch $T/b.ran" '["a"]'),$(hold h)"
	agora-submit p.json >/dev/null
	tick
	started a
	agora-ctl r CANCEL a
	wait_for 'tick; [ "$(item_status r a)" = cancelled ]'
	assert_equal "$(item_status r b)" skipped
	agora-ctl r RETRY a
	tick
	started a 2
	touch "$T/a.2.release" "$T/h.release"
	drive r
	assert_equal "$(outcome r)" succeeded
	[ -e "$T/b.ran" ]
}

@test "RETRY of an item that has not failed is rejected with its reason" {
	agora_init
	plan p.json r "$(hold a)"
	agora-submit p.json >/dev/null
	tick
	agora-ctl r RETRY a
	tick
	run -0 ev r control.rejected
	assert_output --partial '"directive":"RETRY","item":"a",'
	assert_output --partial '"reason":"item '"'a'"' is running; RETRY takes a failed, cancelled or skipped item",'
	assert_equal "$(count r '"event":"item.running"')" 1
	touch "$BATS_TEST_TMPDIR/a.release"
}

@test "DROP-TASK kills and requeues a running item once, not counted as a failure" {
	agora_init agora.maxAttempts 1
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(hold a)"
	agora-submit p.json >/dev/null
	tick
	started a 1
	run -0 agora-ctl r DROP-TASK a
	assert_output ""
	wait_for 'tick; [ "$(count r "\"item.running\"")" = 2 ]'
	started a 2
	# attempt 1 was killed, attempt 2 runs; more ticks drop nothing more
	ticks 20
	assert_equal "$(item_status r a)" running
	assert_equal "$(count r '"event":"item.running"')" 2
	assert_equal "$(count r '"event":"item.retrying"')" 1
	[ ! -e "$T/a.ran" ]
	run -0 ev r item.retrying
	assert_output --partial '"item":"a","status":"ready","attempt":1,"reason":"dropped",'
	run -0 ev r control.applied
	assert_output --partial '"directive":"DROP-TASK","item":"a",'
	# maxAttempts 1, yet the attempt after a drop may still succeed
	touch "$T/a.release"
	drive r
	assert_equal "$(outcome r)" succeeded
	run -0 cat "$T/a.ran"
	assert_output 2
}

@test "DROP-TASK of an item that is not running is rejected with its reason" {
	agora_init
	plan p.json r "$(hold a),$(item b true '["a"]')"
	agora-submit p.json >/dev/null
	tick
	agora-ctl r DROP-TASK b
	tick
	run -0 ev r control.rejected
	assert_output --partial '"directive":"DROP-TASK","item":"b",'
	assert_output --partial '"reason":"item '"'b'"' is pending, not running",'
	touch "$BATS_TEST_TMPDIR/a.release"
	drive r
	assert_equal "$(outcome r)" succeeded
}

@test "ELEVATE changes that item's priority only, once" {
	agora_init queue.default.concurrency 1
	T=$BATS_TEST_TMPDIR
	P="$BATS_TEST_DIRNAME/lib/probe.sh"
	plan p.json r "$(hold h '[]' '"priority":100'),$(item x "$P $T/o x 0" '[]' '[]' '"priority":1'),$(item y "$P $T/o y 0" '[]' '[]' '"priority":2'),$(item z "$P $T/o z 0" '[]' '[]' '"priority":3')"
	agora-submit p.json >/dev/null
	tick
	started h
	run -0 agora-ctl r ELEVATE x 10
	run -0 agora-ctl r ELEVATE z -5
	ticks 10
	run -0 agora-status --json r
	assert_output --partial '"id": "x",
      "status": "ready",
      "attempts": 0,
      "priority": 10,'
	assert_output --partial '"id": "y",
      "status": "ready",
      "attempts": 0,
      "priority": 2,'
	assert_output --partial '"id": "z",
      "status": "ready",
      "attempts": 0,
      "priority": -5,'
	assert_equal "$(count r '"directive":"ELEVATE"')" 2
	run -0 ev r control.applied
	assert_line --index 0 --partial '"directive":"ELEVATE","item":"x","priority":10,'
	assert_line --index 1 --partial '"directive":"ELEVATE","item":"z","priority":-5,'
	touch "$T/h.release"
	drive r
	run -0 cat "$T/o/starts"
	assert_output "$(printf '%s\n' x y z)"
}

@test "ELEVATE of a finished item, or with a bad priority, is rejected with its reason" {
	agora_init
	plan p.json r "$(item a true),$(hold h)"
	agora-submit p.json >/dev/null
	wait_for 'tick; [ "$(item_status r a)" = done ]'
	agora-ctl r ELEVATE a 3
	echo "ELEVATE h high" >> "$D/runs/r/control"
	tick
	run -0 ev r control.rejected
	assert_line --index 0 --partial '"directive":"ELEVATE","item":"a","actor":"human:'
	assert_line --index 0 --partial '"reason":"item '"'a'"' is already done",'
	assert_line --index 1 --partial '"directive":"ELEVATE","actor":"file","reason":"bad priority '"'high'"'",'
	run -100 agora-ctl r ELEVATE h high
	assert_output "agora-ctl: bad priority 'high'"
	run -100 agora-ctl r ELEVATE h 2000000000
	assert_output "agora-ctl: bad priority '2000000000'"
	touch "$BATS_TEST_TMPDIR/h.release"
}

@test "malformed hand-written lines become control.rejected with their reason" {
	agora_init
	plan p.json r "$(hold a)"
	agora-submit p.json >/dev/null
	tick
	cat >> "$D/runs/r/control" <<-'EOF'
	# a comment, then a blank line, are skipped

	FROB a
	PAUSE a
	RETRY
	DROP-TASK a b
	CANCEL ../x
	CANCEL nosuch
	RESUME @
	EOF
	ticks 3
	run -0 ev r control.rejected
	assert_equal "${#lines[@]}" 7
	assert_line --index 0 --partial '"directive":"FROB","actor":"file","reason":"unknown directive '"'FROB'"'",'
	assert_line --index 1 --partial '"directive":"PAUSE","actor":"file","reason":"PAUSE takes no item",'
	assert_line --index 2 --partial '"directive":"RETRY","actor":"file","reason":"usage: RETRY ITEM",'
	assert_line --index 3 --partial '"directive":"DROP-TASK","actor":"file","reason":"usage: DROP-TASK ITEM",'
	assert_line --index 4 --partial '"directive":"CANCEL","actor":"file","reason":"invalid id '"'../x'"': ids match [A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}",'
	assert_line --index 5 --partial '"directive":"CANCEL","item":"nosuch","actor":"file","reason":"unknown item '"'nosuch'"'",'
	assert_line --index 6 --partial '"directive":"RESUME","actor":"file","reason":"bad actor '"'@'"'",'
	assert_equal "$(count r '"event":"control.applied"')" 0
	assert_equal "$(item_status r a)" running
	touch "$BATS_TEST_TMPDIR/a.release"
}

@test "agora-ctl refuses an unknown verb, exit 100, and writes nothing" {
	agora_init
	plan p.json r "$(hold a)"
	agora-submit p.json >/dev/null
	tick
	run -100 agora-ctl r FROB
	assert_output "agora-ctl: unknown directive 'FROB'"
	run -100 agora-ctl r PAUSE a
	assert_output "agora-ctl: PAUSE takes no item"
	run -100 agora-ctl r RETRY
	assert_output "agora-ctl: usage: RETRY ITEM"
	[ ! -s "$D/runs/r/control" ]
	touch "$BATS_TEST_TMPDIR/a.release"
}

@test "agora-ctl refuses an unknown run, exit 100" {
	agora_init
	run -100 agora-ctl x PAUSE
	assert_output "agora-ctl: unknown run 'x'"
	run -100 agora-ctl ../x PAUSE
	assert_output "agora-ctl: invalid id '../x': ids match [A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}"
	[ ! -e "$D/runs/x" ]
}

@test "agora-ctl refuses an unknown item, exit 100" {
	agora_init
	plan p.json r "$(hold a)"
	agora-submit p.json >/dev/null
	tick
	run -100 agora-ctl r CANCEL zz
	assert_output "agora-ctl: unknown item 'zz' in run 'r'"
	[ ! -s "$D/runs/r/control" ]
	touch "$BATS_TEST_TMPDIR/a.release"
}

@test "agora-ctl refuses a completed (and sealed) run, exit 100" {
	agora_init
	plan p.json r "$(item a true)"
	agora-submit p.json >/dev/null
	drive r
	run -100 agora-ctl r PAUSE
	assert_output "agora-ctl: run 'r' is sealed; it takes no more directives"
	[ ! -s "$D/runs/r/control" ]
}

@test "agora-ctl on a run still in the inbox says so, exit 111" {
	agora_init
	plan p.json r "$(item a true)"
	agora-submit p.json >/dev/null
	run -111 agora-ctl r PAUSE
	assert_output "agora-ctl: run 'r' is still in the inbox; it takes directives once a tick has ingested it"
}

@test "agora-ctl usage errors exit 100 with the usage text" {
	agora_init
	run -100 agora-ctl
	assert_line --index 0 "usage: agora-ctl [-d dir] [--actor actor] run directive [item [priority]]"
	run -100 agora-ctl r
	assert_line --index 0 --partial "usage: agora-ctl"
	run -100 agora-ctl r ELEVATE a 1 2
	assert_line --index 0 --partial "usage: agora-ctl"
	run -100 agora-ctl -g
	assert_line --index 0 --partial "usage: agora-ctl"
	run -100 agora-ctl -g PAUSE extra
	assert_line --index 0 --partial "usage: agora-ctl"
}

@test "agora-ctl refuses an argument or actor that is not one word" {
	agora_init
	plan p.json r "$(hold a),$(hold PAUSE)"
	agora-submit p.json >/dev/null
	tick
	# "RETRY\nPAUSE" would otherwise be checked as RETRY PAUSE and written as two lines
	run -100 agora-ctl r "$(printf 'RETRY\nPAUSE')"
	assert_output "agora-ctl: argument 'RETRY\\x0aPAUSE' must be one word, without spaces or control characters"
	run -100 agora-ctl --actor "$(printf 'x\nCANCEL')" r PAUSE
	assert_output "agora-ctl: actor 'x\\x0aCANCEL' must be one word, without spaces or control characters"
	run -100 agora-ctl --actor "a b" r PAUSE
	assert_output "agora-ctl: actor 'a b' must be one word, without spaces or control characters"
	[ ! -s "$D/runs/r/control" ]
	touch "$BATS_TEST_TMPDIR/a.release" "$BATS_TEST_TMPDIR/PAUSE.release"
}

@test "agora-ctl takes -d, and AGORA_DIR" {
	agora_init
	plan p.json r "$(hold a)"
	agora-submit p.json >/dev/null
	tick
	cd /
	AGORA_DIR= run -0 agora-ctl -d "$D" r PAUSE
	run -0 agora-ctl r RESUME
	run -0 cat "$D/runs/r/control"
	assert_line --index 0 --partial "PAUSE @"
	assert_line --index 1 --partial "RESUME @"
	touch "$BATS_TEST_TMPDIR/a.release"
}

@test "agora-ctl takes a negative ELEVATE priority, not as an option" {
	agora_init
	plan p.json r "$(hold a),$(item b true '["a"]')"
	agora-submit p.json >/dev/null
	tick
	run -0 agora-ctl r ELEVATE b -5
	tick
	run -0 ev r control.applied
	assert_output --partial '"directive":"ELEVATE","item":"b","priority":-5,'
	touch "$BATS_TEST_TMPDIR/a.release"
}

@test "agora-ctl refuses a directive longer than a control line" {
	agora_init
	plan p.json r "$(hold a)"
	agora-submit p.json >/dev/null
	tick
	run -100 agora-ctl r CANCEL "$(printf 'x%.0s' $(seq 5000))"
	assert_output "agora-ctl: directive longer than 4096 bytes"
	[ ! -s "$D/runs/r/control" ]
	touch "$BATS_TEST_TMPDIR/a.release"
}

@test "a control line too long, or with a NUL byte, is rejected with its reason" {
	agora_init
	plan p.json r "$(hold a)"
	agora-submit p.json >/dev/null
	tick
	{ printf 'CANCEL '; printf 'x%.0s' $(seq 5000); printf '\n'; printf 'CANCEL\0a\n'; echo PAUSE; } >> "$D/runs/r/control"
	tick
	run -0 ev r 'control\.[a-z]*'
	assert_line --index 0 --partial '"event":"control.rejected","directive":"?","actor":"file","reason":"line longer than 4096 bytes","offset":5008,'
	assert_line --index 1 --partial '"event":"control.rejected","directive":"?","actor":"file","reason":"line contains a NUL byte","offset":5017,'
	assert_line --index 2 --partial '"event":"control.applied","directive":"PAUSE","actor":"file","offset":5023,'
	assert_equal "$(item_status r a)" running
	touch "$BATS_TEST_TMPDIR/a.release"
}

@test "agora-ctl goes by the log: run.completed logged but still in active/ is completed" {
	agora_init
	plan p.json r "$(item a true)"
	agora-submit p.json >/dev/null
	crash_at complete-log
	[ -e "$D/active/r" ]
	run -100 agora-ctl r PAUSE
	assert_output "agora-ctl: run 'r' has completed; it takes no more directives"
}

@test "agora-ctl goes by the log: a run ingested but not yet in active/ takes directives" {
	agora_init
	plan p.json r "$(item a true),$(item b true '["a"]')"
	agora-submit p.json >/dev/null
	run -137 env AGORA_TEST_CRASH=ingest-run agora-reconcile
	[ -e "$D/runs/r/plan.json" ] && [ ! -e "$D/active/r" ]
	run -0 agora-ctl r PAUSE
	ticks 3
	assert_equal "$(count r '"event":"run.paused"')" 1
	assert_equal "$(count r '"event":"item.running"')" 0
	agora-ctl r RESUME
	drive r
	assert_equal "$(outcome r)" succeeded
}

@test "a run's control file rewritten shorter than what was applied is not silently ignored" {
	agora_init
	plan p.json r "$(hold a)"
	agora-submit p.json >/dev/null
	tick
	agora-ctl --actor ops r PAUSE
	tick
	# written with > instead of >>: 7 bytes, fewer than the 11 already applied
	echo RESUME > "$D/runs/r/control"
	ticks 3
	# either applied or rejected with a reason, but logged
	assert_equal "$(count r '"event":"control\.')" 2
	touch "$BATS_TEST_TMPDIR/a.release"
}

@test "the global control file rewritten shorter than what was applied is not silently ignored" {
	agora_init
	plan p.json r "$(hold a),$(item b true '["a"]')"
	agora-submit p.json >/dev/null
	tick
	agora-ctl -g PAUSE
	tick
	assert_equal "$(count r '"event":"run.paused"')" 1
	# written with > instead of >>: every run would stay paused for good
	echo RESUME > "$D/control"
	ticks 3
	assert_equal "$(count r '"event":"control\.')" 2
	touch "$BATS_TEST_TMPDIR/a.release"
}

@test "a RETRY applies once: an item that fails again is not retried again" {
	agora_init agora.maxAttempts 1
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(item a "echo x >> $T/a.tries; exit 5"),$(hold h)"
	agora-submit p.json >/dev/null
	wait_for 'tick; [ "$(item_status r a)" = failed ]'
	agora-ctl r RETRY a
	wait_for 'tick; [ "$(count r "\"event\":\"item.failed\"")" = 2 ]'
	ticks 20
	assert_equal "$(wc -l < "$T/a.tries")" 2
	assert_equal "$(item_status r a)" failed
	touch "$T/h.release"
	drive r
	assert_equal "$(outcome r)" failed
	assert_equal "$(wc -l < "$T/a.tries")" 2
}

@test "a directive left in the control file of a run that logged run.completed adds no line after it" {
	agora_init
	plan p.json r "$(item a true)"
	agora-submit p.json >/dev/null
	crash_at complete-log
	echo PAUSE >> "$D/runs/r/control"
	tick
	[ ! -e "$D/active/r" ]
	# only the seal follows run.completed
	run -0 tail -n 2 "$D/runs/r/status.jsonl"
	assert_line --index 0 --partial '"event":"run.completed"'
	assert_line --index 1 --partial '"event":"run.sealed"'
}

@test "concurrent agora-ctl calls while serve ticks: every line whole, each applied once" {
	agora_init
	plan p.json r "$(hold a),$(item b true '["a"]')"
	agora-submit p.json >/dev/null
	agora-serve -d "$D" -i 100ms 2>"$BATS_TEST_TMPDIR/serve.err" &
	serve=$!
	started a
	pids=
	for i in $(seq 20); do
		agora-ctl --actor "w$i" r ELEVATE b "$i" &
		pids="$pids $!"
	done
	for p in $pids; do
		wait "$p"
	done
	assert_equal "$(wc -l < "$D/runs/r/control")" 20
	run -0 grep -c '^ELEVATE b [0-9]* @w[0-9]*$' "$D/runs/r/control"
	assert_output 20
	size=$(stat -c %s "$D/runs/r/control")
	wait_for "grep -q '\"offset\":$size,' $D/runs/r/status.jsonl"
	touch "$BATS_TEST_TMPDIR/a.release"
	run -0 agora-watch -t 60 r
	kill "$serve"
	wait "$serve" || true
	assert_equal "$(count r '"event":"control.applied"')" 20
	assert_equal "$(count r '"event":"control.rejected"')" 0
	for i in $(seq 20); do
		assert_equal "$(count r "\"directive\":\"ELEVATE\",\"item\":\"b\",\"priority\":$i,\"actor\":\"w$i\"")" 1
	done
}

@test "ELEVATE of a running item changes its priority and nothing else, however many ticks" {
	agora_init
	plan p.json r "$(hold a)"
	agora-submit p.json >/dev/null
	tick
	started a
	before=$(grep -v '"event":"control\.' "$D/runs/r/status.jsonl")
	agora-ctl r ELEVATE a 9
	ticks 20
	# the only new line is the control.applied one
	run -0 grep -v '"event":"control\.' "$D/runs/r/status.jsonl"
	assert_output "$before"
	assert_equal "$(count r '"event":"control.applied","directive":"ELEVATE","item":"a","priority":9,')" 1
	assert_equal "$(wc -l < "$D/runs/r/status.jsonl")" 4
	run -0 agora-status r a
	assert_line "state:     running"
	assert_line "attempts:  1"
	assert_line "priority:  9"
	touch "$BATS_TEST_TMPDIR/a.release"
	drive r
	run -0 cat "$BATS_TEST_TMPDIR/a.ran"
	assert_output 1
}

#!/usr/bin/env bats
load lib/common

start_serve() {
	agora-serve -i "${1:-60s}" 2>"$BATS_TEST_TMPDIR/serve.err" &
	SERVE=$!
}

@test "serve runs a submitted plan at once, woken by the inbox" {
	agora_init
	start_serve 60s
	plan p.json r "$(item a true),$(item b true '["a"]')"
	agora-submit p.json
	# the interval is a minute: only events can finish this in time
	run -0 agora-watch -t 30 r
	kill "$SERVE"; wait "$SERVE"
	assert_equal "$(outcome r)" succeeded
}

@test "serve wakes on a control directive written by hand" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(item a "touch $T/started; until [ -e $T/release ]; do sleep 0.02; done"),$(item b true '["a"]')"
	start_serve 60s
	agora-submit p.json
	wait_for "[ -e $T/started ]"
	echo PAUSE >> "$D/runs/r/control"
	wait_for "grep -q run.paused $D/runs/r/status.jsonl" 30
	touch "$T/release"
	wait_for '[ "$(item_status r a)" = done ]' 30
	assert_equal "$(item_status r b)" ready
	echo RESUME >> "$D/runs/r/control"
	run -0 agora-watch -t 30 r
	kill "$SERVE"; wait "$SERVE"
	assert_equal "$(grep -c '"event":"run.resumed"' "$D/runs/r/status.jsonl")" 1
}

@test "serve watches the control file of a run that a cron tick made active" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(item a "touch $T/started; until [ -e $T/release ]; do sleep 0.02; done"),$(item b true '["a"]')"
	start_serve 60s
	wait_for 'pgrep -f "agora-exec -d $D -r" >/dev/null'
	sleep 0.2
	# serve sleeps while a tick of cron's ingests the run and fires a
	kill -STOP "$SERVE"
	agora-submit -d "$D" p.json >/dev/null
	agora-reconcile -d "$D"
	kill -CONT "$SERVE"
	wait_for "[ -e $T/started ]"
	echo PAUSE >> "$D/runs/r/control"
	wait_for "grep -q run.paused $D/runs/r/status.jsonl" 30
	kill "$SERVE"; wait "$SERVE"
	echo RESUME >> "$D/runs/r/control"
	touch "$T/release"
	drive r
	assert_equal "$(outcome r)" succeeded
}

@test "SIGTERM stops serve cleanly, running attempts go on, a later tick reaps them" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(item a "touch $T/started; until [ -e $T/release ]; do sleep 0.02; done; echo finished > $T/done")"
	start_serve 60s
	agora-submit p.json
	wait_for "[ -e $T/started ]"
	kill -TERM "$SERVE"
	wait "$SERVE"
	touch "$T/release"
	wait_for "[ -e $T/done ]"
	assert_equal "$(item_status r a)" running
	run -0 agora-reconcile
	assert_equal "$(item_status r a)" done
	assert_equal "$(outcome r)" succeeded
}

@test "serve's interval is the backstop for a supervisor that died silently" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(item a "echo \$AGORA_ATTEMPT >> $T/tries; [ \$AGORA_ATTEMPT -gt 1 ] || sleep 1000")"
	start_serve 200ms
	agora-submit p.json
	wait_for "[ -s $T/tries ] && [ -s $D/runs/r/items/a/1/lease ]"
	attempt_pids r a 1
	kill -9 "$sup"
	run -0 agora-watch -t 30 r
	kill "$SERVE"; wait "$SERVE"
	assert_equal "$(cat "$T/tries" | tr '\n' ' ')" "1 2 "
}

@test "a secret in serve's environment never reaches a worker or a log" {
	agora_init
	plan p.json r "$(item a "env > $BATS_TEST_TMPDIR/env")"
	SECRET_TOKEN=s3cr3t-value agora-serve -i 100ms &
	SERVE=$!
	agora-submit p.json
	run -0 agora-watch -t 30 r
	kill "$SERVE"; wait "$SERVE"
	run ! grep -q s3cr3t-value "$BATS_TEST_TMPDIR/env"
	run ! grep -rq s3cr3t-value "$D"
}

@test "serve hands every attempt to one resident supervisor" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(hold a),$(hold b)"
	start_serve 60s
	agora-submit p.json
	attempt_pids r a 1
	local sup_a=$sup
	attempt_pids r b 1
	assert_equal "$sup" "$sup_a"
	assert_equal "$(tr '\0' ' ' < "/proc/$sup/cmdline")" "agora-exec -d $D -r "
	touch "$T/a.release" "$T/b.release"
	run -0 agora-watch -t 30 r
	kill "$SERVE"; wait "$SERVE"
	# the socket closed: the resident supervisor had nothing left and went
	wait_for "! kill -0 $sup 2>/dev/null"
}

@test "a cancel stops one attempt of the resident supervisor; the others go on" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(hold a),$(hold b)"
	start_serve 60s
	agora-submit p.json
	attempt_pids r a 1
	attempt_pids r b 1
	run -0 agora-ctl r CANCEL a
	wait_for '[ "$(item_status r a)" = cancelled ]' 30
	assert_equal "$(item_status r b)" running
	kill -0 "$sup"
	kill -0 "$worker"
	touch "$T/b.release"
	run -1 agora-watch -t 30 r
	kill "$SERVE"; wait "$SERVE"
	assert_equal "$(item_status r b)" done
	run -0 grep '"event":"item.cancelled"' "$D/runs/r/status.jsonl"
	assert_output --partial '"item":"a","status":"cancelled","attempt":1,"reason":"cancelled","signal":15'
}

@test "a timeout under the resident supervisor kills that worker's group only" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(item slow "sleep 1000 & wait" '[]' '[]' '"timeout": 1, "maxAttempts": 1'),$(hold b)"
	start_serve 60s
	agora-submit p.json
	attempt_pids r slow 1
	wait_for '[ "$(item_status r slow)" = failed ]' 30
	assert_equal "$(item_status r b)" running
	run -0 grep '"event":"item.failed"' "$D/runs/r/status.jsonl"
	assert_output --partial '"item":"slow","status":"failed","attempt":1,"signal":15,"reason":"timeout after 1s"'
	touch "$T/b.release"
	run -1 agora-watch -t 30 r
	kill "$SERVE"; wait "$SERVE"
	assert_equal "$(item_status r b)" done
}

@test "kill -9 of serve leaves the resident supervisor running its attempts; a later tick reaps them" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(hold a)"
	start_serve 60s
	agora-submit p.json
	attempt_pids r a 1
	kill -9 "$SERVE"
	wait "$SERVE" || true
	kill -0 "$sup"
	touch "$T/a.release"
	wait_for "[ -e $D/runs/r/items/a/1/result.json ]"
	# serve's end of the socket is closed: the supervisor finished and went
	wait_for "! kill -0 $sup 2>/dev/null"
	assert_equal "$(item_status r a)" running
	run -0 agora-reconcile
	assert_equal "$(item_status r a)" done
	assert_equal "$(outcome r)" succeeded
}

# staged T ITEM AFTER: wait until ITEM's attempt 1 is staged behind AFTER's
staged() {
	wait_for "grep -q '\"item\":\"$1\",\"status\":\"running\",\"attempt\":1,\"after\":\"$2\",\"afterAttempt\":1,' $D/runs/r/status.jsonl" 30
}

# behind_a ITEM-JSON: at concurrency 1, a holds the slot under serve and
# the item b (ITEM-JSON) is staged behind it
behind_a() {
	agora_init queue.default.concurrency 1
	plan p.json r "$(hold a),$1"
	start_serve 60s
	agora-submit p.json
	attempt_pids r a 1
	staged b a
}

@test "serve stages an item behind a running one; it starts when that one ends, within the cap" {
	T=$BATS_TEST_TMPDIR
	behind_a "$(hold b)"
	# its intent is durable and it holds its place, but it has not started
	[ ! -s "$D/runs/r/items/b/1/lease" ]
	[ ! -e "$T/b.started" ]
	run -0 agora-status r b
	assert_line "why:       attempt 1, staged: starts when 'a' ends"
	touch "$T/a.release"
	wait_for "[ -e $T/b.started ]"
	touch "$T/b.release"
	run -0 agora-watch -t 30 r
	kill "$SERVE"; wait "$SERVE"
	# b started after a ended: one worker at a time
	a_end=$(sed -n 's/.*"endedAt": "\(.*\)".*/\1/p' "$D/runs/r/items/a/1/result.json")
	b_start=$(sed -n 's/.*"startedAt": "\(.*\)".*/\1/p' "$D/runs/r/items/b/1/result.json")
	[[ ! "$b_start" < "$a_end" ]]
	assert_equal "$(outcome r)" succeeded
}

@test "a staged item that is cancelled never starts" {
	T=$BATS_TEST_TMPDIR
	behind_a "$(hold b)"
	run -0 agora-ctl r CANCEL b
	wait_for '[ "$(item_status r b)" = cancelled ]' 30
	touch "$T/a.release"
	run -1 agora-watch -t 30 r
	kill "$SERVE"; wait "$SERVE"
	[ ! -e "$T/b.started" ]
	run -0 grep '"item":"b","status":"cancelled"' "$D/runs/r/status.jsonl"
	assert_output --partial '"event":"item.cancelled","item":"b","status":"cancelled","attempt":1,"reason":"cancelled"'
	assert_equal "$(item_status r a)" done
}

@test "PAUSE sends a staged item back to ready, not started; RESUME runs it" {
	T=$BATS_TEST_TMPDIR
	behind_a "$(item b "touch $T/b.started")"
	run -0 agora-ctl r PAUSE
	wait_for "grep -q '\"item\":\"b\",\"status\":\"ready\",\"attempt\":1,\"reason\":\"not started\"' $D/runs/r/status.jsonl" 30
	touch "$T/a.release"
	wait_for '[ "$(item_status r a)" = done ]' 30
	[ ! -e "$T/b.started" ]
	assert_equal "$(item_status r b)" ready
	run -0 agora-ctl r RESUME
	run -0 agora-watch -t 30 r
	kill "$SERVE"; wait "$SERVE"
	[ -e "$T/b.started" ]
	# the attempt that never started is not counted as a failure
	run -0 grep '"item":"b","status":"done"' "$D/runs/r/status.jsonl"
	assert_output --partial '"attempt":2,'
}

@test "after kill -9 of serve a staged item still starts when the one it follows ends, once" {
	T=$BATS_TEST_TMPDIR
	behind_a "$(item b "echo x >> $T/b.runs")"
	kill -9 "$SERVE"
	wait "$SERVE" || true
	touch "$T/a.release"
	wait_for "[ -e $D/runs/r/items/b/1/result.json ]"
	drive r
	assert_equal "$(outcome r)" succeeded
	assert_equal "$(cat "$T/b.runs")" x
	assert_equal "$(grep -c '"item":"b","status":"running"' "$D/runs/r/status.jsonl")" 1
}

@test "a queue with stage = false gets no staged items" {
	agora_init queue.default.concurrency 1 queue.default.stage false
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(hold a),$(item b true)"
	start_serve 60s
	agora-submit p.json
	attempt_pids r a 1
	run -0 agora-status r b
	assert_line "why:       queue 'default' full (1/1)"
	touch "$T/a.release"
	run -0 agora-watch -t 30 r
	kill "$SERVE"; wait "$SERVE"
	run ! grep -q '"after"' "$D/runs/r/status.jsonl"
}

@test "a queue's stage must be a boolean: serve says which key of agora.conf is wrong" {
	agora_init queue.default.stage sometimes
	run -100 --separate-stderr agora-serve -i 60s
	assert_stderr "agora-serve: $D/agora.conf: bad value 'sometimes' for 'queue.default.stage': expected true or false"
}

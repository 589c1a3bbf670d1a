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
	wait_for "[ -s $T/tries ] && [ -s $D/runs/r/items/a/1/pid ]"
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

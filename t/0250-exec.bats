#!/usr/bin/env bats
# agora-exec, the supervisor of one attempt.
load lib/common

@test "the supervisor renews its lease every ttl/3 while the worker runs" {
	agora_init agora.leaseTtl 600ms
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(item a "touch $T/started; until [ -e $T/release ]; do sleep 0.02; done")"
	agora-submit p.json
	agora-reconcile
	wait_for "[ -e $T/started ]"
	lease=$D/runs/r/items/a/1/lease
	first=$(stat -c %Y.%y "$lease")
	wait_for '[ "$(stat -c %Y.%y "$lease")" != "$first" ]' 10
	touch "$T/release"
	drive r
	assert_equal "$(outcome r)" succeeded
}

@test "a hung supervisor's stale lease is called lost, its group killed, the item retried" {
	agora_init agora.leaseTtl 300ms agora.leaseGrace 200ms
	hang_first a
	kill -STOP "$sup"	# alive and holding its flock, but no longer renewing
	drive r 60
	assert_equal "$(outcome r)" succeeded
	run -0 grep '"event":"item.retrying"' "$D/runs/r/status.jsonl"
	assert_output --partial '"reason":"lease lost"'
	wait_for "! kill -0 $worker 2>/dev/null" 10
	wait_for "! kill -0 $sup 2>/dev/null" 10
}

@test "a lost lease whose group number a newer process took kills nobody else's group" {
	agora_init
	hang_first a
	kill -9 "$sup"
	wait_for "! kill -0 $worker 2>/dev/null"
	# as if the number had come round again: a group that started after
	# the lease's last renewal, which the lease names
	setsid sleep 1000 &
	other=$!
	wait_for "[ \"\$(ps -o pgid= -p $other | tr -d ' ')\" = $other ]"
	lease=$D/runs/r/items/a/1/lease
	printf '%s %s\n' "$sup" "$other" > "$lease"
	touch -d "@$(($(date +%s) - 5))" "$lease"
	drive r
	kill -0 "$other"
	kill "$other"
	run -0 grep '"event":"item.retrying"' "$D/runs/r/status.jsonl"
	assert_output --partial '"reason":"lease lost"'
	assert_equal "$(outcome r)" succeeded
}

@test "the exec executor honours inputs.cwd and inputs.env" {
	agora_init
	mkdir work
	printf '{"id":"r","items":[{"id":"a","executor":"exec","inputs":{"argv":["sh","-c","pwd > where; echo $GREETING > what"],"cwd":"%s","env":{"GREETING":"hello"}},"depends_on":[],"resourceLocks":[]}]}' "$BATS_TEST_TMPDIR/work" > p.json
	agora-submit p.json
	drive r
	assert_equal "$(cat work/where)" "$BATS_TEST_TMPDIR/work"
	assert_equal "$(cat work/what)" hello
}

@test "a missing cwd fails the item at once with a clear reason" {
	agora_init agora.maxAttempts 3
	printf '{"id":"r","items":[{"id":"a","executor":"exec","inputs":{"sh":"true","cwd":"/nonexistent/dir"},"depends_on":[],"resourceLocks":[]}]}' > p.json
	agora-submit p.json
	drive r
	run -0 grep '"event":"item.failed"' "$D/runs/r/status.jsonl"
	assert_output --partial "\"reason\":\"cannot change to directory '/nonexistent/dir': No such file or directory\""
}

@test "an executor's configured command runs when the inputs give none" {
	agora_init executor.tool.kind exec executor.tool.command 'cp "$AGORA_INPUT" "$AGORA_OUTPUTS_DIR/seen.json"'
	printf '{"id":"r","items":[{"id":"a","executor":"tool","inputs":{"x":42},"depends_on":[],"resourceLocks":[]}]}' > p.json
	agora-submit p.json
	drive r
	run -0 cat "$D/runs/r/items/a/1/outputs/seen.json"
	assert_output --partial '"x": 42'
}

@test "the worker sees its run, item, attempt and directories" {
	agora_init
	plan p.json r "$(item a 'echo $AGORA_RUN $AGORA_ITEM $AGORA_ATTEMPT $AGORA_DIR $AGORA_OUTPUTS_DIR > '"$BATS_TEST_TMPDIR"'/seen')"
	agora-submit p.json
	drive r
	assert_equal "$(cat seen)" "r a 1 $D $D/runs/r/items/a/1/outputs"
}

@test "the worker holds no lock descriptor: an orphan cannot keep a lock" {
	agora_init
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(item a "ls -l /proc/self/fd/ > $T/fds" '[]' '["k1","k2"]')"
	agora-submit p.json
	drive r
	run ! grep -q "$D/locks\|/lease" "$T/fds"
}

@test "a relative state directory still gives the worker absolute paths" {
	agora-init st >/dev/null
	printf '{"id":"r","items":[{"id":"a","executor":"exec","inputs":{"sh":"echo x > \\"$AGORA_OUTPUTS_DIR/log\\"; echo $AGORA_DIR > \\"$AGORA_OUTPUTS_DIR/dir\\""},"depends_on":[],"resourceLocks":[]}]}' > p.json
	unset AGORA_DIR
	agora-submit -d st p.json
	D=$BATS_TEST_TMPDIR/st
	wait_for 'agora-reconcile -d st; [ -e st/runs/r ] && [ ! -e st/active/r ]'
	assert_equal "$(outcome r)" succeeded
	assert_equal "$(cat st/runs/r/items/a/1/outputs/dir)" "$BATS_TEST_TMPDIR/st"
}

@test "on timeout the group gets TERM first, then KILL after killGrace" {
	agora_init agora.maxAttempts 1 agora.killGrace 500ms
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(item stubborn "trap 'echo got-term >> $T/signals' TERM; while :; do sleep 0.05; done" '[]' '[]' '"timeout":0.5')"
	agora-submit p.json
	drive r
	assert_equal "$(cat "$T/signals")" got-term
	run -0 grep '"event":"item.failed"' "$D/runs/r/status.jsonl"
	assert_output --partial '"signal":9,"reason":"timeout after 0.5s"'
}

@test "a worker that ends on TERM within the grace is not killed" {
	agora_init agora.maxAttempts 1 agora.killGrace 5s
	plan p.json r "$(item polite "trap 'exit 3' TERM; while :; do sleep 0.05; done" '[]' '[]' '"timeout":0.5')"
	agora-submit p.json
	drive r
	run -0 grep '"event":"item.failed"' "$D/runs/r/status.jsonl"
	assert_output --partial '"exit":3,"reason":"timeout after 0.5s"'
}

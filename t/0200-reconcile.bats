#!/usr/bin/env bats
load lib/common

# busy_tick_lock: while another process holds tick.lock, -n exits 111 at once.
busy_tick_lock() {
	flock "$D/tick.lock" sh -c 'touch held; i=0; while [ ! -e done ] && [ $i -lt 1000 ]; do sleep 0.02; i=$((i+1)); done' &
	wait_for '[ -e held ]'
	run -111 agora-reconcile -n
	assert_output "agora-reconcile: another tick holds '$D/tick.lock'"
	touch done
	wait
	rm -f held done
}

@test "a tick with nothing to do changes nothing and exits 0" {
	agora_init
	before=$(find "$D" -printf '%p %s %T@\n' | sort)
	run -0 agora-reconcile -v
	assert_output "ingested 0, rejected 0, reaped 0, fired 0, completed 0, events 0"
	assert_equal "$(find "$D" -printf '%p %s %T@\n' | sort)" "$before"
}

@test "-n returns at once with exit 111 while another tick holds tick.lock" {
	agora_init
	busy_tick_lock
	run -0 agora-reconcile -n
}

@test "an idle tick does not read agora.conf; one with work does, and says what is wrong" {
	agora_init
	plan p.json r "$(item a true)"
	agora-submit p.json
	drive r
	agora-reconcile
	[ -z "$(find "$D/active" "$D/inbox/new" "$D/audit/pending" -mindepth 1)" ]
	printf '[agora]\n\tbogus = 1\n' >> "$D/agora.conf"
	run -0 --separate-stderr agora-reconcile -v
	assert_output "ingested 0, rejected 0, reaped 0, fired 0, completed 0, events 0"
	assert_stderr ""
	# the lock is taken all the same
	busy_tick_lock
	touch "$D/active/r"
	run -100 --separate-stderr agora-reconcile
	assert_stderr "agora-reconcile: $D/agora.conf: unknown key 'agora.bogus'"
}

@test "agora-reconcile answers an idle tick on libc alone and hands any other to agora-tick" {
	local fake="$BATS_TEST_TMPDIR/libexec"
	# the idle answer loads none of libgit2, jansson, libcrypto, zlib
	# (a sanitizer build adds its own runtime libraries, nothing else)
	run -0 readelf -d "$AGORA_ROOT/bin/agora-reconcile"
	assert_output --partial "Shared library: [libc.so.6]"
	refute_output --regexp 'Shared library: \[lib(git2|jansson|crypto|z)\.'
	run -0 readelf -d "$AGORA_ROOT/bin/agora-tick"
	assert_output --partial "Shared library: [libgit2.so"
	agora_init
	mkdir "$fake"
	printf '#!/bin/sh\necho "$0 $*" > "%s/called"\n' "$BATS_TEST_TMPDIR" > "$fake/agora-tick"
	chmod +x "$fake/agora-tick"
	AGORA_LIBEXEC=$fake run -0 agora-reconcile -v -d "$D"
	assert_output "ingested 0, rejected 0, reaped 0, fired 0, completed 0, events 0"
	[ ! -e "$BATS_TEST_TMPDIR/called" ]
	plan p.json r "$(item a true)"
	agora-submit p.json
	AGORA_LIBEXEC=$fake run -0 agora-reconcile -v -d "$D"
	assert_output ""
	assert_equal "$(cat "$BATS_TEST_TMPDIR/called")" "$fake/agora-tick -v -d $D"
	# the real one, found beside agora-reconcile, ingests the plan
	run -0 agora-reconcile -v
	assert_output --partial "ingested 1,"
}

@test "ingest is idempotent: a second tick ingests nothing again" {
	agora_init
	plan p.json r "$(item a true)"
	agora-submit p.json
	run -0 agora-reconcile -v
	assert_output --partial "ingested 1,"
	run -0 agora-reconcile -v
	assert_output --partial "ingested 0,"
	assert_equal "$(grep -c run.submitted "$D/runs/r/status.jsonl")" 1
	[ -z "$(ls "$D/inbox/new")" ] && [ -n "$(ls "$D/inbox/cur")" ]
}

@test "status.jsonl lines are hash-chained over their raw bytes" {
	agora_init
	plan p.json r "$(item a true),$(item b true '["a"]')"
	agora-submit p.json
	drive r
	prev=0000000000000000000000000000000000000000000000000000000000000000
	seq=0
	while IFS= read -r line; do
		assert_equal "$(printf '%s' "$line" | sed 's/.*"prev":"\([0-9a-f]*\)"}$/\1/')" "$prev"
		assert_equal "$(printf '%s' "$line" | sed 's/^{"seq":\([0-9]*\),.*/\1/')" "$seq"
		prev=$(printf '%s' "$line" | sha256sum | cut -d' ' -f1)
		seq=$((seq + 1))
	done < "$D/runs/r/status.jsonl"
	# 8 lines up to run.completed, then run.sealed
	[ "$seq" -eq 9 ]
}

@test "run.completed carries the outcome and the counts" {
	agora_init agora.maxAttempts 1
	plan p.json r "$(item a true),$(item b false),$(item c true '["b"]')"
	agora-submit p.json
	drive r
	run -0 grep '"event":"run.completed"' "$D/runs/r/status.jsonl"
	assert_output --regexp '^\{"seq":[0-9]+,"at":"[0-9T:.-]+Z","run":"r","event":"run.completed","status":"failed","counts":\{"done":1,"failed":1,"skipped":1,"cancelled":0\},"prev":"[0-9a-f]{64}"\}$'
	[ ! -e "$D/active/r" ]
	run -0 grep -c '"state":"completed"' "$D/runs/r/state.json"
}

@test "a tick reads only active runs" {
	agora_init
	plan p.json old "$(item a true)"
	agora-submit p.json
	drive old
	# a finished run's files are history: a tick must not even open them
	echo garbage > "$D/runs/old/status.jsonl"
	echo garbage > "$D/runs/old/plan.json"
	plan q.json new "$(item a true)"
	agora-submit q.json
	run -0 agora-reconcile
	assert_output ""
	drive new
}

@test "a run whose log is corrupt is reported, and other runs go on" {
	agora_init
	plan p.json bad "$(item a "sleep 1000")"
	plan q.json good "$(item a true)"
	agora-submit p.json && agora-submit q.json
	agora-reconcile
	sed -i '2s/"ready"/"READY"/' "$D/runs/bad/status.jsonl"
	run -0 agora-reconcile
	assert_output "agora-reconcile: $D/runs/bad/status.jsonl: line 3: broken hash chain"
	drive good
}

@test "a run whose plan.json gives a timeout out of range is reported, and other runs go on" {
	agora_init
	plan p.json bad "$(item a "sleep 1000" '[]' '[]' '"timeout":5')"
	plan q.json good "$(item a true)"
	agora-submit p.json && agora-submit q.json
	agora-ctl -g PAUSE
	agora-reconcile
	sed -i 's/"timeout":5/"timeout":1e300/' "$D/runs/bad/plan.json"
	agora-ctl -g RESUME
	run -0 agora-reconcile
	assert_output "agora-reconcile: $D/runs/bad/plan.json: item 'a': bad timeout"
	drive good
}

@test "a run whose log numbers an attempt INT_MAX is reported, not fired past it, and other runs go on" {
	agora_init agora.maxAttempts 2 agora.backoff 1h
	plan p.json bad "$(item a false)"
	plan q.json good "$(item a true)"
	agora-submit p.json && agora-submit q.json
	wait_for "agora-reconcile; grep -q item.retrying '$D/runs/bad/status.jsonl'"
	# a forger renumbers attempt 1, makes its retry due and mends the chain
	python3 - "$D/runs/bad/status.jsonl" <<'PY'
import hashlib, re, sys
lines = open(sys.argv[1], "rb").read().split(b"\n")[:-1]
prev = b"0" * 64
for i, l in enumerate(lines):
	l = l.replace(b'"attempt":1,', b'"attempt":2147483647,')
	l = re.sub(rb'"retryAt":"[^"]*"', b'"retryAt":"2000-01-01T00:00:00.000Z"', l)
	lines[i] = l[:l.rindex(b'"prev":"') + 8] + prev + l[l.rindex(b'"prev":"') + 72:]
	prev = hashlib.sha256(lines[i]).hexdigest().encode()
open(sys.argv[1], "wb").write(b"\n".join(lines) + b"\n")
PY
	run -0 agora-reconcile
	assert_output "agora-reconcile: $D/runs/bad/status.jsonl: line 3: bad attempt number"
	drive good
}

@test "a plan.json written by hand whose item id leaves the run's directory is refused, and nothing is made there" {
	agora_init
	mkdir "$D/runs/r"
	printf '{"id":"r","queue":"default","items":[\n%s]}\n' "$(item ../../../escaped true)" > "$D/runs/r/plan.json"
	printf '{"seq":0,"at":"2026-01-01T00:00:00.000Z","run":"r","event":"run.submitted","prev":"%064d"}\n' 0 \
		> "$D/runs/r/status.jsonl"
	touch "$D/active/r"
	run -0 agora-reconcile
	assert_output "agora-reconcile: $D/runs/r/plan.json: item 0: invalid id '../../../escaped': ids match [A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}"
	[ ! -e "$D/escaped" ]
}

@test "result.json, stdout and stderr of an attempt are kept in its directory" {
	agora_init
	plan p.json r "$(item a "echo out; echo err >&2; exit 0")"
	agora-submit p.json
	drive r
	a=$D/runs/r/items/a/1
	assert_equal "$(cat "$a/stdout")" out
	assert_equal "$(cat "$a/stderr")" err
	run -0 grep '"exit": 0' "$a/result.json"
	[ -f "$a/spec.json" ] && [ -f "$a/lease" ] && [ -d "$a/outputs" ] && [ -f "$a/input.json" ]
}

@test "a command that cannot be executed fails at once, without retries" {
	agora_init agora.maxAttempts 3
	printf '{"id":"r","items":[{"id":"a","executor":"exec","inputs":{"argv":["/nonexistent/tool"]},"depends_on":[],"resourceLocks":[]}]}' > p.json
	agora-submit p.json
	drive r
	assert_equal "$(item_status r a)" failed
	run -0 grep '"event":"item.failed"' "$D/runs/r/status.jsonl"
	assert_output --partial "\"exit\":127,\"reason\":\"cannot execute '/nonexistent/tool': No such file or directory\""
	assert_equal "$(grep -c '"event":"item.running"' "$D/runs/r/status.jsonl")" 1
}

@test "stress: 4 concurrent reconcile loops and 2 submitters, every side effect exactly once" {
	agora_init queue.default.concurrency 4
	T=$BATS_TEST_TMPDIR
	for n in $(seq 1 20); do
		plan "p$n.json" "run$n" "$(item a "echo run$n/a >> $T/effects"),$(item b "echo run$n/b >> $T/effects" '["a"]' '["k"]'),$(item c "echo run$n/c >> $T/effects" '["a"]' '["k"]'),$(item d "echo run$n/d >> $T/effects" '["b","c"]'),$(item e "echo run$n/e >> $T/effects")"
	done
	for s in 0 1; do
		( for n in $(seq $((1 + s)) 2 20); do agora-submit "p$n.json" >/dev/null || echo "submit $n failed" >> "$T/errors"; done ) &
	done
	for l in 1 2 3 4; do
		( i=0; while [ ! -e "$T/stop" ] && [ $i -lt 3000 ]; do agora-reconcile >/dev/null 2>>"$T/errors"; i=$((i+1)); done ) &
	done
	wait_for '[ "$(ls "$D/runs" | wc -l)" -eq 20 ] && [ -z "$(ls "$D/active")" ] && [ -z "$(ls "$D/inbox/new")" ]' 180
	touch "$T/stop"
	wait
	[ ! -s "$T/errors" ] || { cat "$T/errors"; false; }
	assert_equal "$(wc -l < "$T/effects")" 100
	assert_equal "$(sort -u "$T/effects" | wc -l)" 100
	for n in $(seq 1 20); do assert_equal "$(outcome "run$n")" succeeded; done
}

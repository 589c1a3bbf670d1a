#!/usr/bin/env bats
# Scheduling: the tasks record what they saw in files; the tests read them.
load lib/common

P="$BATS_TEST_DIRNAME/lib/probe.sh"

probe() { # probe ID DIR [DEPS] [LOCKS] [EXTRA]
	item "$1" "$P $BATS_TEST_TMPDIR/$2 $1" "${3:-[]}" "${4:-[]}" "$5"
}

@test "items with disjoint locks run in parallel" {
	agora_init
	T=$BATS_TEST_TMPDIR
	# each waits, with a deadline, until the other has started
	plan p.json r "$(item a "touch $T/a.on; i=0; until [ -e $T/b.on ]; do sleep 0.02; i=\$((i+1)); [ \$i -lt 500 ] || exit 1; done" '[]' '["k1"]'),$(item b "touch $T/b.on; i=0; until [ -e $T/a.on ]; do sleep 0.02; i=\$((i+1)); [ \$i -lt 500 ] || exit 1; done" '[]' '["k2"]')"
	run -0 agora-submit p.json
	drive r
	assert_equal "$(outcome r)" succeeded
}

@test "items that share a lock never overlap, across runs too" {
	agora_init queue.default.concurrency 8
	plan p1.json r1 "$(probe a k '[]' '["shared/file"]'),$(probe b k '[]' '["shared/file","x"]'),$(probe c k '[]' '["shared/file"]')"
	plan p2.json r2 "$(probe d k '[]' '["shared/file"]'),$(probe e k '[]' '["y","shared/file"]')"
	agora-submit p1.json && agora-submit p2.json
	drive r1 && drive r2
	assert_equal "$(outcome r1)" succeeded
	assert_equal "$(outcome r2)" succeeded
	assert_equal "$(cat k/max)" 1
	assert_equal "$(wc -l < k/starts)" 5
	[ -f "$D/locks/shared%2Ffile" ]
}

@test "a queue's concurrency is never exceeded, and is reached" {
	agora_init queue.default.concurrency 2
	plan p.json r "$(probe a q),$(probe b q),$(probe c q),$(probe d q),$(probe e q),$(probe f q)"
	agora-submit p.json
	drive r
	assert_equal "$(outcome r)" succeeded
	assert_equal "$(cat q/max)" 2
}

@test "the global concurrency caps all queues together" {
	agora_init queue.default.concurrency 3 queue.other.concurrency 3 agora.concurrency 2
	plan p1.json r1 "$(probe a g),$(probe b g),$(probe c g)"
	plan p2.json r2 "$(probe d g),$(probe e g),$(probe f g)"
	agora-submit p1.json && agora-submit --queue other p2.json
	drive r1 && drive r2
	assert_equal "$(cat g/max)" 2
}

@test "fire order is priority, then submission order, then plan order" {
	agora_init queue.default.concurrency 1
	agora-ctl -g PAUSE
	plan p1.json r1 "$(probe low o '[]' '[]' '"priority":1'),$(probe high1 o '[]' '[]' '"priority":5'),$(probe mid o '[]' '[]' '"priority":3'),$(probe high2 o '[]' '[]' '"priority":5')"
	plan p2.json r2 "$(probe other-high o '[]' '[]' '"priority":5'),$(probe other-mid o '[]' '[]' '"priority":3')"
	agora-submit p1.json && agora-submit p2.json
	agora-reconcile
	agora-ctl -g RESUME
	drive r1 && drive r2
	run -0 cat o/starts
	assert_output "$(printf '%s\n' high1 high2 other-high mid other-mid low)"
}

@test "a counted slot's capacity is never exceeded" {
	agora_init queue.default.concurrency 4 slot.llm.capacity 2
	plan p.json r "$(probe a s '[]' '[]' '"slots":{"llm":1}'),$(probe b s '[]' '[]' '"slots":{"llm":1}'),$(probe c s '[]' '[]' '"slots":{"llm":2}'),$(probe d s '[]' '[]' '"slots":{"llm":1}'),$(probe e s '[]' '[]' '"slots":{"llm":1}')"
	agora-submit p.json
	drive r
	assert_equal "$(outcome r)" succeeded
	[ "$(cat s/max)" -le 2 ]
}

@test "an item that waits for a slot longer than its wait fails with 'slot wait timeout'" {
	agora_init queue.default.concurrency 4 slot.llm.capacity 1 slot.llm.wait 300ms
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(item holder "until [ -e $T/release ]; do sleep 0.02; done" '[]' '[]' '"slots":{"llm":1}'),$(item waiter "true" '[]' '[]' '"slots":{"llm":1},"priority":-1')"
	agora-submit p.json
	agora-reconcile
	wait_for '[ "$(item_status r holder)" = running ]'
	wait_for 'agora-reconcile; [ "$(item_status r waiter)" = failed ]' 20
	touch "$T/release"
	drive r
	run -0 grep '"item":"waiter".*"item.failed\|"event":"item.failed","item":"waiter"' "$D/runs/r/status.jsonl"
	assert_output --partial '"reason":"slot wait timeout"'
	assert_equal "$(item_status r holder)" done
	assert_equal "$(outcome r)" failed
}

@test "a failed attempt is retried after its backoff, then succeeds" {
	agora_init agora.backoff 400ms
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(item flaky "date +%s.%N >> $T/tries; [ -e $T/second ] || { touch $T/second; exit 7; }")"
	agora-submit p.json
	drive r
	assert_equal "$(outcome r)" succeeded
	run -0 events r
	assert_output "$(printf '%s\n' run.submitted item.ready item.running item.retrying item.running item.done run.completed run.sealed)"
	run -0 grep '"event":"item.retrying"' "$D/runs/r/status.jsonl"
	assert_output --partial '"attempt":1,"retryAt":'
	assert_output --partial '"exit":7,"reason":"exit 7"'
	# the second try started no earlier than the backoff after the first
	first=$(sed -n 1p "$T/tries"); second=$(sed -n 2p "$T/tries")
	awk -v a="$first" -v b="$second" 'BEGIN { exit !(b - a >= 0.4) }'
}

@test "maxAttempts comes from the item, then the run, then agora.conf" {
	agora_init agora.maxAttempts 4 agora.backoff 0
	printf '{"id":"r","maxAttempts":2,"items":[%s,%s]}\n' \
		"$(item by-item "exit 1" '[]' '[]' '"maxAttempts":3')" "$(item by-run "exit 1")" > p.json
	plan q.json s "$(item by-conf "exit 1")"
	agora-submit p.json && agora-submit q.json
	drive r && drive s
	assert_equal "$(grep -c '"event":"item.running","item":"by-item"' "$D/runs/r/status.jsonl")" 3
	assert_equal "$(grep -c '"event":"item.running","item":"by-run"' "$D/runs/r/status.jsonl")" 2
	assert_equal "$(grep -c '"event":"item.running","item":"by-conf"' "$D/runs/s/status.jsonl")" 4
	assert_equal "$(item_status r by-item)" failed
}

@test "a timeout kills the worker's whole process group, grandchild too" {
	agora_init agora.maxAttempts 1
	T=$BATS_TEST_TMPDIR
	plan p.json r "$(item slow "sleep 1000 & echo \$! > $T/grandchild; wait" '[]' '[]' '"timeout":1')"
	agora-submit p.json
	drive r
	assert_equal "$(item_status r slow)" failed
	run -0 grep '"event":"item.failed"' "$D/runs/r/status.jsonl"
	assert_output --partial '"reason":"timeout after 1s"'
	pid=$(cat "$T/grandchild")
	wait_for "! kill -0 $pid 2>/dev/null" 10
}

@test "a failure skips its dependents transitively in the same tick" {
	agora_init agora.maxAttempts 1
	plan p.json r "$(item a "exit 2"),$(item b true '["a"]'),$(item c true '["b"]'),$(item d true)"
	agora-submit p.json
	drive r
	assert_equal "$(item_status r a)" failed
	assert_equal "$(item_status r b)" skipped
	assert_equal "$(item_status r c)" skipped
	assert_equal "$(item_status r d)" done
	assert_equal "$(outcome r)" failed
	run -0 grep '"event":"item.skipped","item":"c"' "$D/runs/r/status.jsonl"
	assert_output --partial '"reason":"dependency '"'"'b'"'"' skipped","blockedBy":"b"'
	# a's failure and both skips share one tick: no line of another tick between them
	run -0 sh -c "sed -n '/\"item.failed\"/,/\"item.skipped\",\"item\":\"c\"/p' '$D/runs/r/status.jsonl' | sed 's/.*\"event\":\"\\([a-z.]*\\)\".*/\\1/'"
	refute_line item.running
	refute_line item.ready
	run -0 grep -o '"counts":{[^}]*}' "$D/runs/r/status.jsonl"
	assert_output '"counts":{"done":1,"failed":1,"skipped":2,"cancelled":0}'
}

@test "a porki DAG runs end to end in edge order" {
	agora_init executor.porki.kind exec
	conf executor.porki.command "sed -n 's/.*\"title\": \"\\(.*\\)\".*/\\1/p' \"\$AGORA_INPUT\" >> $BATS_TEST_TMPDIR/porki.log"
	cat > dag.json <<-'JSON'
	{"goal_id": "goal-001",
	 "nodes": [{"id": "task-003", "title": "Write", "priority": 1},
	           {"id": "task-001", "title": "Research", "priority": 10},
	           {"id": "task-002", "title": "Outline", "priority": 5}],
	 "edges": [{"source": "task-001", "target": "task-002"},
	           {"source": "task-002", "target": "task-003"}]}
	JSON
	run -0 agora-submit --executor porki dag.json
	assert_output goal-001
	drive goal-001
	assert_equal "$(outcome goal-001)" succeeded
	run -0 cat porki.log
	assert_output "$(printf 'Research\nOutline\nWrite')"
}

@test "the worker's environment holds only what agora passes" {
	agora_init agora.passEnv "WANTED"
	printf '{"id":"r","items":[{"id":"e","executor":"exec","inputs":{"sh":"env | sort > %s/env","env":{"FROM_PLAN":"yes"}},"depends_on":[],"resourceLocks":[]}]}' "$BATS_TEST_TMPDIR" > p.json
	agora-submit p.json
	LC_ALL=C LC_TIME=C WANTED=1 SECRET=hunter2 drive r
	run -0 cut -d= -f1 env
	assert_output "$(printf '%s\n' AGORA_ATTEMPT AGORA_DIR AGORA_INPUT AGORA_ITEM AGORA_OUTPUTS_DIR AGORA_RUN FROM_PLAN HOME LANG LC_ALL PATH PWD TZ WANTED | sort)"
	run ! grep -r hunter2 "$D"
}

@test "locks are first come, first served per key: a big lock set is not starved" {
	agora_init queue.default.concurrency 8
	T=$BATS_TEST_TMPDIR
	hold() { item "$1" "echo $1 >> $T/order; until [ -e $T/release-$1 ]; do sleep 0.02; done" '[]' "$2"; }
	plan p.json r "$(hold a '["k1"]'),$(hold b '["k2"]'),$(item x "echo x >> $T/order" '[]' '["k1","k2"]'),$(item c "echo c >> $T/order" '[]' '["k1"]'),$(item d "echo d >> $T/order" '[]' '["k2"]')"
	agora-submit p.json
	agora-reconcile
	wait_for '[ "$(wc -l < order)" -eq 2 ]'
	run -0 agora-status r
	assert_line --regexp '^x +ready .*lock .k1. held by a$'
	assert_line --regexp '^c +ready .*lock .k1. held by a$'
	touch release-a
	wait_for '[ "$(item_status r a)" = done ] || { agora-reconcile; false; }'
	agora-reconcile
	# k1 is free now, but x came first: c must not take it
	assert_equal "$(item_status r c)" ready
	run -0 agora-status r
	assert_line --regexp '^x +ready .*lock .k2. held by b$'
	assert_line --regexp '^c +ready .*lock .k1. queued for by x$'
	touch release-b
	drive r
	assert_equal "$(head -n 2 order | sort | tr '\n' ' ')" "a b "
	assert_equal "$(sed -n 3p order)" x
	assert_equal "$(tail -n 2 order | sort | tr '\n' ' ')" "c d "
}

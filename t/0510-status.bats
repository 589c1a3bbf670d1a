#!/usr/bin/env bats
# agora-status: every run with its counts; for a run, each item's state,
# attempts, reason, and why it waits. Each WHY test builds its situation,
# runs exactly one tick, then asks: no race with a later tick.
load lib/common

# row ITEM STATE ATTEMPTS PRIORITY REASON WHY: one line of the run view.
row() {
	printf '%-32s %-10s %8s %9s  %-20s %s\n' "$@"
}

# runrow RUN STATE OUTCOME ITEMS PENDING READY RUNNING DONE FAILED SKIPPED CANCELLED
runrow() {
	printf '%-24s %-10s %-9s %6s %7s %5s %7s %5s %6s %7s %9s\n' "$@"
}

release_all() {
	touch "$BATS_TEST_TMPDIR"/{a,b,c,h,x}.release
}

@test "status lists every run, with its state, outcome and counts per state" {
	agora_init agora.maxAttempts 1
	plan p1.json r1 "$(item a true)"
	plan p3.json r3 "$(item f "exit 3"),$(item g true '["f"]'),$(item e true)"
	agora-submit p1.json >/dev/null && agora-submit p3.json >/dev/null
	drive r1 && drive r3
	plan p2.json r2 "$(hold h),$(item b true '["h"]')"
	agora-submit p2.json >/dev/null
	tick
	plan p4.json r4 "$(item a true)"
	agora-submit p4.json >/dev/null
	run -0 agora-status
	assert_output "$(runrow RUN STATE OUTCOME ITEMS PENDING READY RUNNING DONE FAILED SKIPPED CANCELLED
		runrow r1 completed succeeded 1 0 0 0 1 0 0 0
		runrow r2 active - 2 1 0 1 0 0 0 0
		runrow r3 completed failed 3 0 0 0 1 1 1 0
		runrow r4 queued - - - - - - - - -)"
	release_all
}

@test "status --json lists every run with its counts" {
	agora_init
	plan p1.json r1 "$(item a true)"
	agora-submit p1.json >/dev/null
	drive r1
	plan p2.json r2 "$(hold h),$(item b true '["h"]')"
	agora-submit p2.json >/dev/null
	tick
	agora-ctl r2 PAUSE
	tick
	plan p3.json r3 "$(item a true)"
	agora-submit p3.json >/dev/null
	run -0 agora-status --json
	assert_line --index 0 '['
	assert_output --partial '"run": "r1",
    "queue": "default",
    "state": "completed",
    "outcome": "succeeded",
    "paused": false,
    "cancelled": false,'
	assert_output --partial '"items": 1,
    "counts": {
      "pending": 0,
      "ready": 0,
      "running": 0,
      "done": 1,
      "failed": 0,
      "skipped": 0,
      "cancelled": 0
    }'
	assert_output --partial '"run": "r2",
    "queue": "default",
    "state": "paused",
    "paused": true,
    "cancelled": false,'
	assert_output --partial '"items": 2,
    "counts": {
      "pending": 1,
      "ready": 0,
      "running": 1,'
	assert_output --partial '{
    "run": "r3",
    "state": "queued"
  }'
	refute_output --partial itemStates
	release_all
}

@test "status with no runs prints the header only" {
	agora_init
	run -0 agora-status
	assert_output "$(runrow RUN STATE OUTCOME ITEMS PENDING READY RUNNING DONE FAILED SKIPPED CANCELLED)"
	run -0 agora-status --json
	assert_output "[]"
}

@test "status RUN shows each item's state, attempts, reason, and why it waits on a dependency" {
	agora_init
	plan p.json r "$(hold a),$(item b true '["a"]'),$(item c true '["a","b"]')"
	agora-submit p.json >/dev/null
	tick
	run -0 agora-status r
	assert_output "$(printf 'run r  queue default  active\npending 2  ready 0  running 1  done 0  failed 0  skipped 0  cancelled 0\n'
		row ITEM STATE ATTEMPTS PRIORITY REASON WHY
		row a running 1 0 - 'attempt 1'
		row b pending 0 0 - "dependency 'a' (running)"
		row c pending 0 0 - "dependency 'a' (running) and 1 more")"
	release_all
}

@test "why: a lock held by which item, in the same run and across runs" {
	agora_init queue.default.concurrency 4
	plan p1.json r1 "$(hold a '[]' '["k"]'),$(hold b '[]' '["k"]')"
	plan p2.json r2 "$(hold c '[]' '["k"]')"
	agora-submit p1.json >/dev/null && agora-submit p2.json >/dev/null
	tick
	run -0 agora-status r1
	assert_line "$(row b ready 0 0 - "lock 'k' held by a")"
	run -0 agora-status r2
	assert_line "$(row c ready 0 0 - "lock 'k' held by r1/a")"
	release_all
}

@test "why: a lock queued for by an earlier item, first come first served" {
	agora_init queue.default.concurrency 4
	plan p.json r "$(hold a '[]' '["k1"]'),$(hold b '[]' '["k1","k2"]'),$(hold c '[]' '["k2"]')"
	agora-submit p.json >/dev/null
	tick
	run -0 agora-status r
	assert_line "$(row b ready 0 0 - "lock 'k1' held by a")"
	assert_line "$(row c ready 0 0 - "lock 'k2' queued for by b")"
	release_all
}

@test "why: a counted slot in use" {
	agora_init queue.default.concurrency 4 slot.llm.capacity 2
	plan p.json r "$(hold a '[]' '[]' '"slots":{"llm":2}'),$(hold b '[]' '[]' '"slots":{"llm":1}')"
	agora-submit p.json >/dev/null
	tick
	run -0 agora-status r
	assert_line "$(row b ready 0 0 - "slot 'llm' (2/2 in use)")"
	release_all
}

@test "why: the queue is full, or the global concurrency" {
	agora_init queue.default.concurrency 2 queue.other.concurrency 5 agora.concurrency 3
	plan p1.json r1 "$(hold a),$(hold b),$(hold c)"
	plan p2.json r2 "$(hold h),$(hold x)"
	agora-submit p1.json >/dev/null && agora-submit --queue other p2.json >/dev/null
	tick
	run -0 agora-status r1
	assert_line "$(row c ready 0 0 - "queue 'default' full (2/2)")"
	run -0 agora-status r2
	assert_line "$(row x ready 0 0 - "global concurrency full (3/3)")"
	release_all
}

@test "why: the run is paused, or every run is" {
	agora_init queue.default.concurrency 1
	plan p.json r "$(hold a),$(hold b)"
	agora-submit p.json >/dev/null
	tick
	run -0 agora-status r
	assert_line "$(row b ready 0 0 - "queue 'default' full (1/1)")"
	agora-ctl r PAUSE
	tick
	run -0 agora-status r
	assert_line --index 0 "run r  queue default  active (paused)"
	assert_line "$(row b ready 0 0 - paused)"
	agora-ctl r RESUME
	agora-ctl -g PAUSE
	tick
	run -0 agora-status r
	assert_line --index 0 "run r  queue default  active (paused)"
	assert_line "$(row b ready 0 0 - "paused (global)")"
	release_all
}

@test "why: backoff until the next attempt, with the last attempt's reason" {
	agora_init agora.backoff 1h agora.maxAttempts 2
	plan p.json r "$(item f "exit 3")"
	agora-submit p.json >/dev/null
	tick
	wait_for 'tick; [ "$(item_status r f)" = ready ]'
	at=$(sed -n 's/.*"event":"item.retrying".*"retryAt":"\([^"]*\)".*/\1/p' "$D/runs/r/status.jsonl")
	[ -n "$at" ]
	run -0 agora-status r
	assert_line "$(row f ready 1 0 "exit 3" "backoff until $at")"
}

@test "why: an item whose backoff has passed fires on the next tick" {
	agora_init agora.backoff 300ms agora.maxAttempts 2
	plan p.json r "$(item f "exit 3")"
	agora-submit p.json >/dev/null
	tick
	wait_for 'tick; [ "$(item_status r f)" = ready ]'
	wait_for 'agora-status r | grep -q "fires on the next tick"'
	run -0 agora-status r
	assert_line "$(row f ready 1 0 "exit 3" "fires on the next tick")"
}

@test "why: a running item being cancelled, or dropped" {
	agora_init
	plan p.json r "$(hold a),$(hold b)"
	agora-submit p.json >/dev/null
	tick
	wait_for "[ -e $BATS_TEST_TMPDIR/a.started ] && [ -e $BATS_TEST_TMPDIR/b.started ]"
	# the leases name the workers, so that the tick signals them at once
	wait_for "[ -s $D/runs/r/items/a/1/lease ] && [ -s $D/runs/r/items/b/1/lease ]"
	agora-ctl r CANCEL a
	agora-ctl r DROP-TASK b
	tick
	run -0 agora-status r
	assert_line "$(row a running 1 0 - "attempt 1, cancelling")"
	assert_line "$(row b running 1 0 - "attempt 1, dropping")"
	release_all
}

@test "status of a finished run shows its outcome and each item's reason, no why" {
	agora_init agora.maxAttempts 1
	plan p.json r "$(item f "exit 3"),$(item g true '["f"]'),$(item e true)"
	agora-submit p.json >/dev/null
	drive r
	run -0 agora-status r
	assert_output "$(printf 'run r  queue default  failed\npending 0  ready 0  running 0  done 1  failed 1  skipped 1  cancelled 0\n'
		row ITEM STATE ATTEMPTS PRIORITY REASON WHY
		row f failed 1 0 'exit 3' -
		row g skipped 0 0 "dependency 'f' failed" -
		row e done 1 0 - -)"
}

@test "status RUN --json has every item with its why" {
	agora_init
	plan p.json r "$(hold a '[]' '["k"]'),$(hold b '[]' '["k"]' '"priority":-1')"
	agora-submit p.json >/dev/null
	tick
	run -0 agora-status --json r
	assert_output --partial '"run": "r",
  "queue": "default",
  "state": "active",'
	assert_output --partial '"itemStates": [
    {
      "id": "a",
      "status": "running",
      "attempts": 1,
      "priority": 0,
      "why": "attempt 1"
    },
    {
      "id": "b",
      "status": "ready",
      "attempts": 0,
      "priority": -1,
      "why": "lock '"'k'"' held by a"
    }
  ]'
	release_all
}

@test "why: the slot counts of a plan.json written by hand add up past INT_MAX" {
	agora_init slot.llm.capacity 2 queue.default.concurrency 0
	mkdir "$D/runs/r"
	cat > "$D/runs/r/plan.json" <<'EOF'
{"id":"r","queue":"default","items":[
{"id":"a","executor":"exec","inputs":{"sh":"true"},"depends_on":[],"resourceLocks":[],"slots":{"llm":2000000000}},
{"id":"b","executor":"exec","inputs":{"sh":"true"},"depends_on":[],"resourceLocks":[],"slots":{"llm":2000000000}},
{"id":"c","executor":"exec","inputs":{"sh":"true"},"depends_on":[],"resourceLocks":[],"slots":{"llm":1}}]}
EOF
	# a and b running, each holding two billion units of llm, chained as reconcile chains
	python3 - "$D/runs/r/status.jsonl" <<'PY'
import hashlib, json, sys
prev, out = "0" * 64, []
for i, e in enumerate([{"event": "run.submitted"}] +
		[{"event": "item.ready", "item": x, "status": "ready"} for x in "abc"] +
		[{"event": "item.running", "item": x, "status": "running", "attempt": 1} for x in "ab"]):
	line = json.dumps(dict({"seq": i, "at": "2026-01-01T00:00:00.000Z", "run": "r"}, **e,
		prev=prev), separators=(",", ":"))
	out.append(line)
	prev = hashlib.sha256(line.encode()).hexdigest()
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
	run -0 agora-status r
	assert_line "$(row c ready 0 0 - "slot 'llm' (4000000000/2 in use)")"
}

@test "status RUN ITEM shows one item in detail" {
	agora_init slot.llm.capacity 1
	plan p.json r "$(hold a '[]' '["k"]'),$(item b true '["a"]' '["k","src/x y"]' '"slots":{"llm":1},"priority":4')"
	agora-submit p.json >/dev/null
	tick
	run -0 agora-status r b
	assert_output "run:       r
item:      b
state:     pending
attempts:  0
priority:  4
reason:    -
why:       dependency 'a' (running)
depends:   a (running)
locks:     'k' 'src/x y'
slots:     llm=1"
	run -0 agora-status r a
	assert_output "run:       r
item:      a
state:     running
attempts:  1
priority:  0
reason:    -
why:       attempt 1
depends:   -
locks:     'k'
slots:     -
attempt:   $D/runs/r/items/a/1"
	release_all
}

@test "status RUN ITEM --json is the item with its spec and why" {
	agora_init
	plan p.json r "$(hold a),$(item b true '["a"]')"
	agora-submit p.json >/dev/null
	tick
	run -0 agora-status --json r b
	assert_output '{
  "id": "b",
  "status": "pending",
  "attempts": 0,
  "priority": 0,
  "why": "dependency '"'a'"' (running)",
  "spec": {
    "id": "b",
    "executor": "exec",
    "inputs": {
      "sh": "true"
    },
    "depends_on": [
      "a"
    ],
    "resourceLocks": [],
    "priority": 0
  }
}'
	release_all
}

@test "status of a run still in the inbox says it is queued" {
	agora_init
	plan p.json r "$(item a true)"
	agora-submit p.json >/dev/null
	run -0 agora-status r
	assert_output "run r  queued: in the inbox until a tick ingests it"
	run -0 agora-status --json r
	assert_output '{
  "run": "r",
  "state": "queued"
}'
}

@test "status refuses an unknown run or item, exit 100" {
	agora_init
	run -100 agora-status x
	assert_output "agora-status: unknown run 'x'"
	run -100 agora-status --json x
	assert_output "agora-status: unknown run 'x'"
	run -100 agora-status ../x
	assert_output "agora-status: invalid id '../x': ids match [A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}"
	plan p.json r "$(item a true)"
	agora-submit p.json >/dev/null
	drive r
	run -100 agora-status r zz
	assert_output "agora-status: unknown item 'zz' in run 'r'"
	run -100 agora-status r a b
	assert_line --index 0 "usage: agora-status [--json] [-d dir] [run [item]]"
}

@test "status reports a run whose log is corrupt, lists the others, and exits 100" {
	agora_init
	plan p1.json good "$(item a true)"
	plan p2.json bad "$(hold h)"
	agora-submit p1.json >/dev/null && agora-submit p2.json >/dev/null
	drive good
	sed -i '2s/"ready"/"READY"/' "$D/runs/bad/status.jsonl"
	run --separate-stderr -100 agora-status
	assert_output "$(runrow RUN STATE OUTCOME ITEMS PENDING READY RUNNING DONE FAILED SKIPPED CANCELLED
		runrow good completed succeeded 1 0 0 0 1 0 0 0)"
	assert_equal "$stderr" "agora-status: $D/runs/bad/status.jsonl: line 3: broken hash chain"
	run -100 agora-status bad
	assert_output "agora-status: $D/runs/bad/status.jsonl: line 3: broken hash chain"
	release_all
}

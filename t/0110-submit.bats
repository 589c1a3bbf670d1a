#!/usr/bin/env bats
# agora-submit: validate, then deliver maildir-style into inbox/; and what
# agora-reconcile does with whatever lands in inbox/new.
load lib/common

setup() {
	common_setup
	agora_init
}

# inbox DIR: the names in inbox/DIR, one per line.
inbox() {
	ls -A "$D/inbox/$1"
}

# jget FILE EXPR: a Python expression over the JSON document j in FILE.
jget() {
	python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# submitted RUN FIELD: a field of the run.submitted line of RUN.
submitted() {
	python3 -c 'import json, sys; j = json.loads(open(sys.argv[1]).readline()); assert j["event"] == "run.submitted"; print(j[sys.argv[2]])' \
		"$D/runs/$1/status.jsonl" "$2"
}

# Everything under the test directory but the state tree (and bats' own files).
outside() {
	(cd "$BATS_TEST_TMPDIR" && find . -path ./state -prune -o ! -name 'separate-stderr-*' -print | sort)
}

ID_SYNTAX='ids match [A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}'

# ---- delivery ----

@test "submit prints the run id and exits 0" {
	fixture valid.json
	run -0 --separate-stderr agora-submit valid.json
	assert_output build-1
	assert_stderr ""
}

@test "submit delivers one file into inbox/new named SEC.USEC.PID,RUN" {
	fixture valid.json
	run -0 agora-submit valid.json
	run -0 inbox new
	assert_regex "$output" '^[0-9]{10}\.[0-9]{6}\.[0-9]+,build-1$'
}

@test "submit leaves nothing in inbox/tmp" {
	fixture valid.json
	run -0 agora-submit valid.json
	run -0 inbox tmp
	assert_output ""
}

@test "the delivered file is a valid plan" {
	fixture valid.json
	run -0 agora-submit valid.json
	f=$(inbox new)
	run -0 agora-validate "$D/inbox/new/$f"
	assert_output "$D/inbox/new/$f: ok (3 items)"
}

@test "a tick ingests a submitted plan into runs/RUN/plan.json" {
	fixture valid.json
	agora-submit valid.json
	tick
	[ -f "$D/runs/build-1/plan.json" ]
	run -0 jget "$D/runs/build-1/plan.json" '[i["id"] for i in j["items"]]'
	assert_output "['compile', 'test', 'package']"
	run -0 inbox new
	assert_output ""
}

@test "needs.from is added to depends_on in the stored plan" {
	fixture valid.json
	agora-submit valid.json
	tick
	run -0 jget "$D/runs/build-1/plan.json" 'j["items"][2]["depends_on"]'
	assert_output "['test', 'compile']"
}

@test "the actor defaults to human:<user>" {
	fixture valid.json
	agora-submit valid.json
	tick
	run -0 submitted build-1 actor
	assert_output "human:$(id -un)"
}

@test "--actor names who submitted, in the run.submitted line" {
	fixture valid.json
	run -0 agora-submit --actor bot:ci valid.json
	tick
	run -0 submitted build-1 actor
	assert_output bot:ci
}

@test "an --actor with a space is refused, and nothing is delivered" {
	fixture valid.json
	run -100 --separate-stderr agora-submit --actor 'a b' valid.json
	assert_output ""
	assert_stderr "agora-submit: invalid actor 'a b': printable characters, no spaces or '@'"
	run -0 inbox new
	assert_output ""
}

@test "an actor in the plan that breaks the rules is a validation error" {
	printf '{"id":"r1","actor":"x@y","items":[%s]}' "$(item a true)" > p.json
	run -100 --separate-stderr agora-submit p.json
	assert_stderr "p.json: \$.actor: invalid actor 'x@y': printable characters, no spaces or '@'"
}

@test "--id replaces the run id, in the output, the file name and the stored plan" {
	fixture valid.json
	run -0 agora-submit --id other valid.json
	assert_output other
	run -0 inbox new
	assert_regex "$output" ',other$'
	tick
	run -0 jget "$D/runs/other/plan.json" 'j["id"]'
	assert_output other
	[ ! -e "$D/runs/build-1" ]
}

@test "--queue puts the run in that queue" {
	conf queue.batch.concurrency 1
	fixture valid.json
	run -0 agora-submit --queue batch valid.json
	tick
	run -0 submitted build-1 queue
	assert_output batch
	run -0 jget "$D/runs/build-1/plan.json" 'j["queue"]'
	assert_output batch
}

@test "a plan without a queue goes to the default queue" {
	fixture valid.json
	agora-submit valid.json
	tick
	run -0 submitted build-1 queue
	assert_output default
}

@test "an unknown --queue is refused, and nothing is delivered" {
	fixture valid.json
	run -100 --separate-stderr agora-submit --queue gpu valid.json
	assert_stderr "valid.json: --queue: unknown queue 'gpu' (not in agora.conf)"
	run -0 inbox new
	assert_output ""
}

@test "a plan without an id gets a generated one" {
	printf '{"items":[%s]}' "$(item a true)" > p.json
	run -0 agora-submit p.json
	assert_regex "$output" '^run-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$'
	id=$output
	run -0 inbox new
	assert_regex "$output" ",$id\$"
	tick
	[ -f "$D/runs/$id/plan.json" ]
}

@test "two plans without ids get two different ids" {
	printf '{"items":[%s]}' "$(item a true)" > p.json
	a=$(agora-submit p.json)
	b=$(agora-submit p.json)
	assert_not_equal "$a" "$b"
}

@test "a plan is read from standard input with -" {
	run -0 --separate-stderr agora-submit - < "$FIXTURES/plans/valid.json"
	assert_output build-1
	assert_stderr ""
	tick
	[ -f "$D/runs/build-1/plan.json" ]
}

@test "an invalid plan from standard input names <stdin>" {
	run -100 --separate-stderr agora-submit - < "$FIXTURES/plans/cycle.json"
	assert_output ""
	assert_stderr '<stdin>: $.items[0].depends_on[0]: dependency cycle: a -> b -> c -> a'
}

@test "a porki DAG is submitted with --executor and stored as items" {
	conf executor.porki.kind exec
	conf executor.porki.command true
	fixture valid-porki.json
	run -0 agora-submit --executor porki valid-porki.json
	assert_output goal-001
	tick
	run -0 jget "$D/runs/goal-001/plan.json" '[(i["id"], i["executor"], i["depends_on"], i["priority"]) for i in j["items"]]'
	assert_output "[('task-001', 'porki', [], 10), ('task-002', 'porki', ['task-001'], 5), ('task-003', 'porki', ['task-002'], 1)]"
}

@test "a porki DAG without an executor is refused, and nothing is delivered" {
	fixture valid-porki.json
	run -100 --separate-stderr agora-submit valid-porki.json
	assert_stderr 'valid-porki.json: $: a porki DAG needs an executor: give --executor or set agora.porkiExecutor'
	run -0 inbox new
	assert_output ""
}

# ---- refusals ----

@test "an invalid plan exits 100 with every error, and nothing is delivered" {
	fixture several-defects.json
	run -100 --separate-stderr agora-submit several-defects.json
	assert_output ""
	assert_equal "${#stderr_lines[@]}" 13
	assert_equal "${stderr_lines[0]}" 'several-defects.json: $.colour: unknown field'
	assert_equal "${stderr_lines[12]}" "several-defects.json: \$.queue: unknown queue 'nowhere' (not in agora.conf)"
	run -0 inbox new
	assert_output ""
	run -0 inbox tmp
	assert_output ""
}

@test "malformed JSON is refused with its line and column" {
	fixture malformed-json.json
	run -100 --separate-stderr agora-submit malformed-json.json
	assert_stderr "malformed-json.json:5:44: invalid JSON: string or '}' expected near '}'"
	run -0 inbox new
	assert_output ""
}

@test "a plan file over 64 MiB is refused, and nothing is delivered" {
	plan p.json r1 "$(item a true)"
	head -c $((64 * 1024 * 1024 + 1 - $(wc -c < p.json))) /dev/zero | tr '\0' ' ' >> p.json
	run -100 --separate-stderr agora-submit p.json
	assert_stderr 'p.json: plan is larger than the limit of 67108864 bytes'
	run -0 inbox new
	assert_output ""
}

@test "a run id that was already ingested is refused with its own message" {
	fixture valid.json
	agora-submit valid.json
	tick
	run -100 --separate-stderr agora-submit valid.json
	assert_output ""
	assert_stderr "agora-submit: run 'build-1' already exists; choose another id with --id"
	run -0 inbox new
	assert_output ""
}

@test "a run id still waiting in inbox/new is refused with its own message" {
	fixture valid.json
	agora-submit valid.json
	run -100 --separate-stderr agora-submit valid.json
	assert_output ""
	assert_stderr "agora-submit: run 'build-1' is already waiting in the inbox; choose another id with --id"
	run -0 inbox new
	assert_equal "${#lines[@]}" 1
}

@test "a taken run id is free again under another --id" {
	fixture valid.json
	agora-submit valid.json
	run -0 agora-submit --id build-2 valid.json
	assert_output build-2
	run -0 inbox new
	assert_equal "${#lines[@]}" 2
}

@test "a missing plan file is an error naming it" {
	run -100 --separate-stderr agora-submit nosuch.json
	assert_stderr "agora-submit: cannot read 'nosuch.json': No such file or directory"
}

@test "agora-submit outside a state tree says so" {
	fixture valid.json
	run -100 --separate-stderr agora-submit -d "$BATS_TEST_TMPDIR/nothing" valid.json
	assert_stderr "agora-submit: '$BATS_TEST_TMPDIR/nothing' is not a state directory (no agora.conf); create one with agora-init"
	[ ! -e "$BATS_TEST_TMPDIR/nothing" ]
}

# ---- ids never escape the state directory ----

@test "a plan id with ../ creates nothing outside the state directory" {
	before=$(outside)
	printf '{"id":"../../escaped","items":[%s]}' "$(item a true)" > p.json
	run -100 --separate-stderr agora-submit p.json
	assert_stderr "p.json: \$.id: invalid id '../../escaped': $ID_SYNTAX"
	rm p.json
	assert_equal "$(outside)" "$before"
	run -0 inbox new
	assert_output ""
}

@test "an --id with ../ creates nothing outside the state directory" {
	fixture valid.json
	before=$(outside)
	run -100 --separate-stderr agora-submit --id ../../escaped valid.json
	assert_stderr "valid.json: --id: invalid id '../../escaped': $ID_SYNTAX"
	assert_equal "$(outside)" "$before"
	run -0 inbox new
	assert_output ""
}

@test "a --queue or --executor with ../ creates nothing outside the state directory" {
	fixture valid-porki.json
	before=$(outside)
	run -100 --separate-stderr agora-submit --queue ../../q --executor ../../e valid-porki.json
	assert_stderr "valid-porki.json: --executor: invalid id '../../e': $ID_SYNTAX
valid-porki.json: --queue: invalid id '../../q': $ID_SYNTAX"
	assert_equal "$(outside)" "$before"
}

@test "a hand-placed plan with ../ ids is rejected and creates nothing outside" {
	before=$(outside)
	printf '{"id":"../../escaped","items":[{"id":"../x","executor":"exec","inputs":{"sh":"touch ../../pwned"},"depends_on":[],"resourceLocks":["../../lock"]}]}' \
		> "$D/inbox/new/1.2.3,escaped"
	tick
	tick
	assert_equal "$(outside)" "$before"
	[ -f "$D/inbox/rejected/1.2.3,escaped" ]
	run -0 ls -A "$D/runs"
	assert_output ""
}

# ---- defence in depth: what reconcile does with a bad file in inbox/new ----

@test "a malformed plan in inbox/new moves to inbox/rejected with a .err file" {
	printf '{"id": "r1",' > "$D/inbox/new/1700000000.000001.1,r1"
	run -0 agora-reconcile -d "$D"
	run -0 inbox new
	assert_output ""
	run -0 inbox rejected
	assert_output "$(printf '1700000000.000001.1,r1\n1700000000.000001.1,r1.err')"
	run -0 cat "$D/inbox/rejected/1700000000.000001.1,r1"
	assert_output '{"id": "r1",'
	run -0 cat "$D/inbox/rejected/1700000000.000001.1,r1.err"
	assert_output "inbox/new/1700000000.000001.1,r1:1:12: invalid JSON: string or '}' expected near end of file"
}

@test "an invalid plan in inbox/new is rejected with every error in its .err file" {
	cp "$FIXTURES/plans/several-defects.json" "$D/inbox/new/1700000000.000001.1,x"
	run -0 agora-reconcile -d "$D"
	run -0 inbox new
	assert_output ""
	cmp "$FIXTURES/plans/several-defects.json" "$D/inbox/rejected/1700000000.000001.1,x"
	run -0 cat "$D/inbox/rejected/1700000000.000001.1,x.err"
	assert_equal "${#lines[@]}" 13
	assert_equal "${lines[0]}" 'inbox/new/1700000000.000001.1,x: $.colour: unknown field'
	run -0 ls -A "$D/runs"
	assert_output ""
}

@test "a plan in inbox/new whose run id exists is rejected, and the run is untouched" {
	fixture valid.json
	agora-submit valid.json
	tick
	before=$(cat "$D/runs/build-1/plan.json")
	cp valid.json "$D/inbox/new/1700000000.000001.1,build-1"
	run -0 agora-reconcile -d "$D"
	run -0 cat "$D/inbox/rejected/1700000000.000001.1,build-1.err"
	assert_output "run id 'build-1' already exists"
	assert_equal "$(cat "$D/runs/build-1/plan.json")" "$before"
}

@test "a plan in inbox/new without an id is rejected, not dropped" {
	printf '{"items":[%s]}' "$(item a true)" > "$D/inbox/new/1700000000.000001.1,noid"
	run -0 agora-reconcile -d "$D"
	run -0 cat "$D/inbox/rejected/1700000000.000001.1,noid.err"
	assert_output "plan has no run id"
	run -0 inbox new
	assert_output ""
}

@test "a good plan next to a bad one in inbox/new is still ingested" {
	printf 'garbage' > "$D/inbox/new/1700000000.000001.1,bad"
	fixture valid.json
	agora-submit valid.json
	run -0 agora-reconcile -d "$D"
	[ -f "$D/runs/build-1/plan.json" ]
	[ -f "$D/inbox/rejected/1700000000.000001.1,bad.err" ]
	run -0 inbox new
	assert_output ""
}

# ---- plans read one item at a time ----

@test "a plan is read item by item: fields after items, tricky strings and CRLF give the same plan.json" {
	printf '{\r\n "items" : [ {"id":"a","executor":"exec","inputs":{"sh":"echo \\"]},{[\\" \\\\"},\r\n' > p.json
	printf '   "depends_on":[],"resourceLocks":["x\\"]"]} ,\r\n' >> p.json
	printf '  {"resourceLocks":[],"depends_on":["a"],"inputs":{"argv":["true"]},"executor":"exec","id":"b","priority":-3}\r\n' >> p.json
	printf ' ] ,\r\n "title": "t ]}" , "id" :"late-id", "maxAttempts":2 }\r\n' >> p.json
	run -0 agora-submit p.json
	assert_output "late-id"
	run -0 agora-reconcile
	run -0 sed -e 's/"submittedAt":[0-9]*,"source":"[^"]*",//' "$D/runs/late-id/plan.json"
	assert_output - <<'OUT'
{"id":"late-id","queue":"default","title":"t ]}","actor":"human:root","maxAttempts":2,"itemCount":2,"items":[
{"id":"a","executor":"exec","inputs":{"sh":"echo \"]},{[\" \\"},"depends_on":[],"resourceLocks":["x\"]"],"priority":0},
{"id":"b","executor":"exec","inputs":{"argv":["true"]},"depends_on":["a"],"resourceLocks":[],"priority":-3}
]}
OUT
}

@test "what item-by-item reading cannot follow falls back to the whole plan, with its exact errors" {
	# a duplicate top-level key, trailing bytes, and an error in the last item
	printf '{"id":"r","items":[{"id":"a","executor":"exec","inputs":{"argv":["true"]},"depends_on":[],"resourceLocks":[]}],"id":"s"}\n' > dup.json
	run -100 --separate-stderr agora-submit dup.json
	assert_stderr "dup.json:1:115: invalid JSON: duplicate object key near '\"id\"'"
	printf '{"id":"r","items":[{"id":"a","executor":"exec","inputs":{"argv":["true"]},"depends_on":[],"resourceLocks":[]}]} x\n' > tail.json
	run -100 --separate-stderr agora-submit tail.json
	assert_stderr "tail.json:1:113: invalid JSON: end of file expected near 'x'"
	python3 - > last.json <<'PY'
import json
items = [{"id": "t%d" % i, "executor": "exec", "inputs": {"argv": ["true"]},
          "depends_on": ["t%d" % (i - 1)] if i else [], "resourceLocks": []} for i in range(2000)]
items[-1]["depends_on"] = ["nope"]
items[-1]["bogus"] = 1
print(json.dumps({"id": "r", "items": items}))
PY
	run -100 --separate-stderr agora-submit last.json
	assert_stderr "last.json: \$.items[1999].bogus: unknown field
last.json: \$.items[1999].depends_on[0]: unknown dependency 'nope'"
	run -0 ls -A "$D/inbox/new"
	assert_output ""
}

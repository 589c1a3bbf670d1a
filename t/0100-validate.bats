#!/usr/bin/env bats
# agora-validate: both plan formats, every defect reported at once with its
# JSON path, exit 100 on any; and no state touched.
load lib/common

setup() {
	common_setup
	agora_init
}

# The state tree, every entry with its type, mode and size, and every file's hash.
snapshot() {
	(cd "$D" && find . -printf '%p %y %m %s\n' | sort &&
		find . -type f -exec sha256sum {} + | sort)
}

# long N: N bytes of 'x'.
long() {
	head -c "$1" /dev/zero | tr '\0' x
}

ID_SYNTAX='ids match [A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}'

# ---- valid plans ----

@test "a valid agora plan exits 0 and says ok with its item count" {
	fixture valid.json
	run -0 --separate-stderr agora-validate valid.json
	assert_output "valid.json: ok (3 items)"
	assert_stderr ""
}

@test "a one-item plan says 1 item" {
	plan p.json r1 "$(item a true)"
	run -0 agora-validate p.json
	assert_output "p.json: ok (1 item)"
}

@test "a valid porki DAG exits 0 with --executor" {
	conf executor.porki.kind exec
	conf executor.porki.command true
	fixture valid-porki.json
	run -0 --separate-stderr agora-validate --executor porki valid-porki.json
	assert_output "valid-porki.json: ok (3 items)"
	assert_stderr ""
}

@test "a porki DAG takes its executor from agora.porkiExecutor" {
	conf executor.porki.kind exec
	conf executor.porki.command true
	conf agora.porkiExecutor porki
	fixture valid-porki.json
	run -0 agora-validate valid-porki.json
	assert_output "valid-porki.json: ok (3 items)"
}

@test "a plan is read from standard input with -" {
	run -0 --separate-stderr agora-validate - < "$FIXTURES/plans/valid.json"
	assert_output "<stdin>: ok (3 items)"
	assert_stderr ""
}

@test "an invalid plan on standard input is named <stdin>" {
	run -100 --separate-stderr agora-validate - < "$FIXTURES/plans/unknown-dependency.json"
	assert_output ""
	assert_stderr "<stdin>: \$.items[1].depends_on[1]: unknown dependency 'nowhere'"
}

# ---- one fixture per defect ----

@test "malformed JSON is reported with its line and column" {
	fixture malformed-json.json
	run -100 --separate-stderr agora-validate malformed-json.json
	assert_output ""
	assert_stderr "malformed-json.json:5:44: invalid JSON: string or '}' expected near '}'"
}

@test "malformed JSON near a control byte says the byte as \\xNN, on one line" {
	printf '{"id":"r","items":[\001]}\n' > p.json
	run -100 --separate-stderr agora-validate p.json
	assert_stderr "p.json:1:20: invalid JSON: invalid token near '\\x01'"
	printf '{"id":"r","items":[\033[2J]}\n' > q.json
	run -100 --separate-stderr agora-validate q.json
	assert_stderr "q.json:1:20: invalid JSON: invalid token near '\\x1b'"
}

@test "an empty file is malformed JSON" {
	: > empty.json
	run -100 --separate-stderr agora-validate empty.json
	assert_stderr "empty.json:1:0: invalid JSON: '[' or '{' expected near end of file"
}

@test "a plan that is not an object is refused" {
	echo '[]' > p.json
	run -100 --separate-stderr agora-validate p.json
	assert_stderr 'p.json: $: expected object, got array'
}

@test "a key given twice is malformed JSON" {
	echo '{"id": "a", "id": "b", "items": []}' > p.json
	run -100 --separate-stderr agora-validate p.json
	assert_stderr "p.json:1:16: invalid JSON: duplicate object key near '\"id\"'"
}

@test "unknown fields are refused at the top level and in items" {
	fixture unknown-field.json
	run -100 --separate-stderr agora-validate unknown-field.json
	assert_output ""
	assert_stderr 'unknown-field.json: $.owner: unknown field
unknown-field.json: $.items[0].dependsOn: unknown field'
}

@test "a field of the wrong type is refused, naming both types" {
	fixture wrong-type.json
	run -100 --separate-stderr agora-validate wrong-type.json
	assert_output ""
	assert_stderr 'wrong-type.json: $.items[0].depends_on: expected array, got string
wrong-type.json: $.items[0].priority: expected integer, got string'
}

@test "a missing required field is refused" {
	echo '{"id": "r1", "items": [{"id": "a", "executor": "exec", "inputs": {"sh": "true"}}]}' > p.json
	run -100 --separate-stderr agora-validate p.json
	assert_stderr 'p.json: $.items[0].depends_on: missing required field
p.json: $.items[0].resourceLocks: missing required field'
}

@test "a plan without items is refused" {
	echo '{"id": "r1", "items": []}' > p.json
	run -100 --separate-stderr agora-validate p.json
	assert_stderr 'p.json: $.items: a plan needs at least one item'
}

@test "a duplicate item id is refused, pointing at the first" {
	fixture duplicate-id.json
	run -100 --separate-stderr agora-validate duplicate-id.json
	assert_output ""
	assert_stderr "duplicate-id.json: \$.items[2].id: duplicate id 'a' (first at \$.items[0])"
}

@test "an unknown dependency is refused" {
	fixture unknown-dependency.json
	run -100 --separate-stderr agora-validate unknown-dependency.json
	assert_output ""
	assert_stderr "unknown-dependency.json: \$.items[1].depends_on[1]: unknown dependency 'nowhere'"
}

@test "an unknown needs.from is refused where the plan names it" {
	fixture unknown-need.json
	run -100 --separate-stderr agora-validate unknown-need.json
	assert_stderr "unknown-need.json: \$.items[0].needs.base.from: unknown dependency 'nowhere'"
}

@test "a dependency cycle is refused, and the message names the cycle" {
	fixture cycle.json
	run -100 --separate-stderr agora-validate cycle.json
	assert_output ""
	assert_stderr 'cycle.json: $.items[0].depends_on[0]: dependency cycle: a -> b -> c -> a'
}

@test "an item that depends on itself is refused" {
	fixture self-dependency.json
	run -100 --separate-stderr agora-validate self-dependency.json
	assert_stderr "self-dependency.json: \$.items[0].depends_on[0]: item 'a' depends on itself"
}

@test "a cycle through 100 000 items is found without overflowing the stack" {
	awk 'BEGIN {
		printf "{\"id\":\"r1\",\"items\":["
		for (i = 0; i < 100000; i++)
			printf "%s{\"id\":\"i%d\",\"executor\":\"exec\",\"inputs\":{\"sh\":\"true\"},\"depends_on\":[\"i%d\"],\"resourceLocks\":[]}",
			    i ? "," : "", i, (i + 1) % 100000
		printf "]}\n"
	}' > p.json
	run -100 --separate-stderr agora-validate p.json
	assert_equal "${#stderr_lines[@]}" 1
	assert_regex "$stderr" '^p\.json: \$\.items\[0\]\.depends_on\[0\]: dependency cycle: i0 -> i1 -> i2 -> .* -> \.\.\. -> i0$'
}

@test "an id with ../ breaks the id syntax" {
	fixture id-dotdot.json
	run -100 --separate-stderr agora-validate id-dotdot.json
	assert_output ""
	assert_stderr "id-dotdot.json: \$.id: invalid id '../x': $ID_SYNTAX
id-dotdot.json: \$.items[0].id: invalid id '../x': $ID_SYNTAX"
}

@test "an empty id breaks the id syntax" {
	fixture id-empty.json
	run -100 --separate-stderr agora-validate id-empty.json
	assert_stderr 'id-empty.json: $.id: empty id
id-empty.json: $.items[0].id: empty id'
}

@test "an id with a NUL byte is refused once, the byte shown escaped" {
	fixture id-nul.json
	run -100 --separate-stderr agora-validate id-nul.json
	assert_stderr "id-nul.json: \$.id: string 'r\\x00' contains a NUL byte
id-nul.json: \$.items[0].id: string 'a\\x00b' contains a NUL byte"
}

@test "an id of 200 characters is refused, and the message shortens it" {
	fixture id-too-long.json
	run -100 --separate-stderr agora-validate id-too-long.json
	assert_stderr "id-too-long.json: \$.items[0].id: id '$(long 80)...' is longer than 128 characters"
}

@test "an id of 128 characters is accepted" {
	plan p.json "$(long 128)" "$(item a true)"
	run -0 agora-validate p.json
	assert_output "p.json: ok (1 item)"
}

@test "an unknown executor is refused" {
	fixture unknown-executor.json
	run -100 --separate-stderr agora-validate unknown-executor.json
	assert_output ""
	assert_stderr "unknown-executor.json: \$.items[0].executor: unknown executor 'docker' (not in agora.conf)"
}

@test "an unknown queue is refused" {
	fixture unknown-queue.json
	run -100 --separate-stderr agora-validate unknown-queue.json
	assert_output ""
	assert_stderr "unknown-queue.json: \$.queue: unknown queue 'gpu' (not in agora.conf)"
}

@test "an unknown slot is refused" {
	fixture unknown-slot.json
	run -100 --separate-stderr agora-validate unknown-slot.json
	assert_output ""
	assert_stderr "unknown-slot.json: \$.items[0].slots.llm: unknown slot 'llm' (not in agora.conf)"
}

@test "the same slot, once configured, is accepted" {
	conf slot.llm.capacity 2
	fixture unknown-slot.json
	run -0 agora-validate unknown-slot.json
	assert_output "unknown-slot.json: ok (1 item)"
}

@test "an item that asks for more of a slot than its capacity is refused" {
	conf slot.llm.capacity 2
	plan p.json r1 "$(item a true '[]' '[]' '"slots":{"llm":3}')"
	run -100 --separate-stderr agora-validate p.json
	assert_stderr "p.json: \$.items[0].slots.llm: asks for 3 of slot 'llm', whose capacity is 2"
}

@test "a needs entry is checked field by field" {
	plan p.json r1 "$(item a true),$(item b true '[]' '[]' '"needs":{"p":{"from":"a","select":{"kind":"patch","path":"x"},"via":1},"o":{"from":"a","select":{"kind":"output"}},"d":{"from":"a","select":{"kind":"diff"}},"n":{"select":{}}}')"
	run -100 --separate-stderr agora-validate p.json
	assert_stderr 'p.json: $.items[1].needs.p.via: unknown field
p.json: $.items[1].needs.p.select.path: kind "patch" takes no path
p.json: $.items[1].needs.o.select.path: missing required field for kind "output"
p.json: $.items[1].needs.d.select.kind: unknown kind '"'diff'"': use "patch" or "output"
p.json: $.items[1].needs.n.from: missing required field
p.json: $.items[1].needs.n.select.kind: missing required field'
}

@test "the inputs of an exec item are checked" {
	plan p.json r1 '{"id":"a","executor":"exec","inputs":{"argv":[],"env":{"AGORA_DIR":"/","A=B":"x","N":1}},"depends_on":[],"resourceLocks":[]}'
	run -100 --separate-stderr agora-validate p.json
	assert_stderr 'p.json: $.items[0].inputs.argv: empty argv
p.json: $.items[0].inputs.env.AGORA_DIR: AGORA_ variables are set by agora, not by plans
p.json: $.items[0].inputs.env.A=B: invalid environment variable name
p.json: $.items[0].inputs.env.N: expected string, got integer'
}

@test "an empty porki DAG is refused" {
	conf executor.porki.kind exec
	conf executor.porki.command true
	echo '{"goal_id": "g", "nodes": [], "edges": []}' > dag.json
	run -100 --separate-stderr agora-validate --executor porki dag.json
	assert_stderr 'dag.json: $.nodes: a DAG needs at least one node'
}

# ---- size limits ----

@test "a string of 65 536 bytes is accepted" {
	plan p.json r1 "$(item a true '[]' '[]' "\"title\":\"$(long 65536)\"")"
	run -0 agora-validate p.json
	assert_output "p.json: ok (1 item)"
}

@test "a string over 65 536 bytes is refused" {
	plan p.json r1 "$(item a true '[]' '[]' "\"title\":\"$(long 65537)\"")"
	run -100 --separate-stderr agora-validate p.json
	assert_stderr 'p.json: $.items[0].title: string of 65537 bytes is longer than the limit of 65536'
}

@test "a plan of more than 100 000 items is refused" {
	awk 'BEGIN {
		printf "{\"id\":\"r1\",\"items\":["
		for (i = 0; i <= 100000; i++)
			printf "%s{\"id\":\"i%d\",\"executor\":\"exec\",\"inputs\":{\"sh\":\"true\"},\"depends_on\":[],\"resourceLocks\":[]}",
			    i ? "," : "", i
		printf "]}\n"
	}' > p.json
	run -100 --separate-stderr agora-validate p.json
	assert_stderr 'p.json: $.items: 100001 items is more than the limit of 100000'
}

@test "a plan of exactly 100 000 items is accepted" {
	awk 'BEGIN {
		printf "{\"id\":\"r1\",\"items\":["
		for (i = 0; i < 100000; i++)
			printf "%s{\"id\":\"i%d\",\"executor\":\"exec\",\"inputs\":{\"sh\":\"true\"},\"depends_on\":[],\"resourceLocks\":[]}",
			    i ? "," : "", i
		printf "]}\n"
	}' > p.json
	run -0 agora-validate p.json
	assert_output "p.json: ok (100000 items)"
}

@test "a porki DAG of more than 100 000 nodes is refused" {
	conf executor.porki.kind exec
	conf executor.porki.command true
	awk 'BEGIN {
		printf "{\"goal_id\":\"g\",\"nodes\":["
		for (i = 0; i <= 100000; i++)
			printf "%s{\"id\":\"n%d\"}", i ? "," : "", i
		printf "],\"edges\":[]}\n"
	}' > dag.json
	run -100 --separate-stderr agora-validate --executor porki dag.json
	assert_stderr 'dag.json: $.nodes: 100001 nodes is more than the limit of 100000'
}

@test "a plan file over 64 MiB is refused" {
	plan p.json r1 "$(item a true)"
	head -c $((64 * 1024 * 1024 + 1 - $(wc -c < p.json))) /dev/zero | tr '\0' ' ' >> p.json
	run -100 --separate-stderr agora-validate p.json
	assert_output ""
	assert_stderr 'p.json: plan is larger than the limit of 67108864 bytes'
}

@test "a plan file of exactly 64 MiB is accepted" {
	plan p.json r1 "$(item a true)"
	head -c $((64 * 1024 * 1024 - $(wc -c < p.json))) /dev/zero | tr '\0' ' ' >> p.json
	run -0 agora-validate p.json
	assert_output "p.json: ok (1 item)"
}

@test "more than 1000 errors are counted, not all printed" {
	awk 'BEGIN {
		printf "{\"id\":\"r1\",\"items\":["
		for (i = 0; i < 1003; i++)
			printf "%s{\"id\":\"i%d\",\"executor\":\"exec\",\"inputs\":{\"sh\":\"true\"},\"depends_on\":[],\"resourceLocks\":[],\"bad\":1}",
			    i ? "," : "", i
		printf "]}\n"
	}' > p.json
	run -100 --separate-stderr agora-validate p.json
	assert_equal "${#stderr_lines[@]}" 1001
	assert_equal "${stderr_lines[0]}" 'p.json: $.items[0].bad: unknown field'
	assert_equal "${stderr_lines[999]}" 'p.json: $.items[999].bad: unknown field'
	assert_equal "${stderr_lines[1000]}" 'p.json: ... and 3 more errors'
}

# ---- porki DAGs ----

@test "a porki DAG without an executor says how to name one" {
	fixture valid-porki.json
	run -100 --separate-stderr agora-validate valid-porki.json
	assert_output ""
	assert_stderr 'valid-porki.json: $: a porki DAG needs an executor: give --executor or set agora.porkiExecutor'
}

@test "a porki DAG with an unknown --executor is refused" {
	fixture valid-porki.json
	run -100 --separate-stderr agora-validate --executor docker valid-porki.json
	assert_stderr "valid-porki.json: --executor: unknown executor 'docker' (not in agora.conf)"
}

@test "an --executor that breaks the id syntax is refused" {
	fixture valid-porki.json
	run -100 --separate-stderr agora-validate --executor ../x valid-porki.json
	assert_stderr "valid-porki.json: --executor: invalid id '../x': $ID_SYNTAX"
}

@test "an unknown agora.porkiExecutor is refused" {
	conf agora.porkiExecutor docker
	fixture valid-porki.json
	run -100 --separate-stderr agora-validate valid-porki.json
	assert_stderr "valid-porki.json: \$: agora.porkiExecutor: unknown executor 'docker' (not in agora.conf)"
}

@test "a porki DAG refuses an exec executor without a command" {
	fixture valid-porki.json
	run -100 --separate-stderr agora-validate --executor exec valid-porki.json
	assert_stderr "valid-porki.json: --executor: executor 'exec' has no command in agora.conf, and porki nodes carry no inputs.argv or inputs.sh"
}

@test "a porki DAG refuses a dispatch executor, whose items would name no subagent" {
	conf executor.d.kind dispatch
	conf executor.d.repo /nowhere
	fixture valid-porki.json
	run -100 --separate-stderr agora-validate --executor d valid-porki.json
	assert_stderr "valid-porki.json: --executor: executor 'd' is of kind dispatch, and porki nodes carry no inputs.subagent"
	conf agora.porkiExecutor d
	run -100 --separate-stderr agora-submit valid-porki.json
	assert_stderr "valid-porki.json: \$: agora.porkiExecutor: executor 'd' is of kind dispatch, and porki nodes carry no inputs.subagent"
	[ -z "$(ls "$D/inbox/new")" ]
}

@test "--executor is refused for an agora plan" {
	fixture valid.json
	run -100 --separate-stderr agora-validate --executor exec valid.json
	assert_stderr 'valid.json: --executor: applies only to porki DAGs; the items of an agora plan name their executor'
}

@test "a porki edge to an unknown node is refused" {
	conf executor.porki.kind exec
	conf executor.porki.command true
	fixture porki-unknown-node.json
	run -100 --separate-stderr agora-validate --executor porki porki-unknown-node.json
	assert_output ""
	assert_stderr "porki-unknown-node.json: \$.edges[1].target: unknown node 'task-009'"
}

@test "a porki cycle is named in edge order, at the edge that starts it" {
	conf executor.porki.kind exec
	conf executor.porki.command true
	fixture porki-cycle.json
	run -100 --separate-stderr agora-validate --executor porki porki-cycle.json
	assert_stderr 'porki-cycle.json: $.edges[0]: dependency cycle: task-001 -> task-002 -> task-003 -> task-001'
}

@test "a porki edge from a node to itself is refused at the edge" {
	conf executor.porki.kind exec
	conf executor.porki.command true
	echo '{"goal_id": "g", "nodes": [{"id": "n"}], "edges": [{"source": "n", "target": "n"}]}' > dag.json
	run -100 --separate-stderr agora-validate --executor porki dag.json
	assert_stderr "dag.json: \$.edges[0]: node 'n' depends on itself"
}

@test "unknown fields are refused in porki nodes and edges" {
	conf executor.porki.kind exec
	conf executor.porki.command true
	echo '{"goal_id": "g", "nodes": [{"id": "n", "owner": "x"}, {"id": "m"}], "edges": [{"source": "n", "target": "m", "weight": 1}], "x": 1}' > dag.json
	run -100 --separate-stderr agora-validate --executor porki dag.json
	assert_stderr 'dag.json: $.x: unknown field
dag.json: $.nodes[0].owner: unknown field
dag.json: $.edges[0].weight: unknown field'
}

# ---- all errors at once ----

@test "validation reports every error of a plan, one per line" {
	fixture several-defects.json
	run -100 --separate-stderr agora-validate several-defects.json
	assert_output ""
	assert_stderr "several-defects.json: \$.colour: unknown field
several-defects.json: \$.id: invalid id '../escape': $ID_SYNTAX
several-defects.json: \$.items[0].priority: expected integer, got string
several-defects.json: \$.items[1].executor: unknown executor 'python' (not in agora.conf)
several-defects.json: \$.items[1].slots.gpu: unknown slot 'gpu' (not in agora.conf)
several-defects.json: \$.items[2].resourceLocks: expected array, got string
several-defects.json: \$.items[3]: expected object, got string
several-defects.json: \$.items[4].id: missing required field
several-defects.json: \$.items[4].timeout: -5 is out of range [1, 2592000]
several-defects.json: \$.items[2].id: duplicate id 'fetch' (first at \$.items[0])
several-defects.json: \$.items[1].depends_on[1]: unknown dependency 'ghost'
several-defects.json: \$.items[0].depends_on[0]: dependency cycle: fetch -> parse -> fetch
several-defects.json: \$.queue: unknown queue 'nowhere' (not in agora.conf)"
}

# ---- --id and --queue ----

@test "--id is accepted for a plan with or without its own id" {
	fixture valid.json
	run -0 agora-validate --id other valid.json
	assert_output "valid.json: ok (3 items)"
	printf '{"items":[%s]}' "$(item a true)" > noid.json
	run -0 agora-validate --id other noid.json
	assert_output "noid.json: ok (1 item)"
}

@test "--id does not excuse an invalid id in the plan" {
	fixture id-dotdot.json
	run -100 --separate-stderr agora-validate --id good id-dotdot.json
	assert_stderr "id-dotdot.json: \$.id: invalid id '../x': $ID_SYNTAX
id-dotdot.json: \$.items[0].id: invalid id '../x': $ID_SYNTAX"
}

@test "an --id that breaks the id syntax is refused" {
	fixture valid.json
	run -100 --separate-stderr agora-validate --id ../../etc valid.json
	assert_stderr "valid.json: --id: invalid id '../../etc': $ID_SYNTAX"
}

@test "an empty --id is refused" {
	fixture valid.json
	run -100 --separate-stderr agora-validate --id '' valid.json
	assert_stderr 'valid.json: --id: empty id'
}

@test "--queue replaces the plan's queue" {
	conf queue.batch.concurrency 1
	fixture unknown-queue.json
	run -0 agora-validate --queue batch unknown-queue.json
	assert_output "unknown-queue.json: ok (1 item)"
}

@test "an unknown --queue is refused" {
	fixture valid.json
	run -100 --separate-stderr agora-validate --queue gpu valid.json
	assert_stderr "valid.json: --queue: unknown queue 'gpu' (not in agora.conf)"
}

@test "a --queue that breaks the id syntax is refused" {
	fixture valid.json
	run -100 --separate-stderr agora-validate --queue 'a b' valid.json
	assert_stderr "valid.json: --queue: invalid id 'a b': $ID_SYNTAX"
}

# ---- no state touched ----

@test "validating a valid plan touches no state" {
	fixture valid.json
	before=$(snapshot)
	run -0 agora-validate valid.json
	assert_equal "$(snapshot)" "$before"
}

@test "validating an invalid plan touches no state" {
	fixture several-defects.json
	before=$(snapshot)
	run -100 agora-validate several-defects.json
	assert_equal "$(snapshot)" "$before"
}

@test "validating a porki DAG from stdin touches no state" {
	conf executor.porki.kind exec
	conf executor.porki.command true
	before=$(snapshot)
	run -0 agora-validate --executor porki - < "$FIXTURES/plans/valid-porki.json"
	assert_equal "$(snapshot)" "$before"
}

# ---- usage ----

@test "a missing plan file is an error naming it" {
	run -100 --separate-stderr agora-validate nosuch.json
	assert_output ""
	assert_stderr "agora-validate: cannot read 'nosuch.json': No such file or directory"
}

@test "agora-validate without a file prints its usage" {
	run -100 --separate-stderr agora-validate
	assert_stderr 'usage: agora-validate [-d dir] [--executor name] [--id id] [--queue queue] file'
}

@test "agora-validate outside a state tree says so" {
	fixture valid.json
	run -100 --separate-stderr agora-validate -d "$BATS_TEST_TMPDIR/nothing" valid.json
	assert_stderr "agora-validate: '$BATS_TEST_TMPDIR/nothing' is not a state directory (no agora.conf); create one with agora-init"
}

@test "an agora.conf that libgit2 cannot read is said on one line, its control bytes as \\xNN" {
	fixture valid.json
	printf '[agora]\n\tpassEnv = a\\\033[2Jb\n' >> "$D/agora.conf"
	run -100 --separate-stderr agora-validate valid.json
	assert_stderr "agora-validate: cannot read '$D/agora.conf': invalid escape at \\x1b[2Jb"
}

@test "reading item by item and reading the whole plan agree on 2000 mangled plans, byte for byte" {
	mkdir plans
	python3 - <<'PY'
import json, random
random.seed(20261129)
base = {"id": "r", "title": "t", "items": [
    {"id": "a", "executor": "exec", "inputs": {"sh": "echo \"]}\\"}, "depends_on": [], "resourceLocks": ["x"]},
    {"id": "b", "executor": "exec", "inputs": {"argv": ["true"]}, "depends_on": ["a"], "resourceLocks": [], "priority": 3},
    {"id": "c", "executor": "exec", "inputs": {"argv": ["true"]}, "depends_on": ["a", "b"], "resourceLocks": [],
     "needs": {"k": {"from": "a", "select": {"kind": "output", "path": "o"}}}}]}
alphabet = b'{}[]",:\\ \n\r\t0123456789abcdefnulltrue-+.eE\x00\xff'
for n in range(2000):
    b = bytearray(json.dumps(base, indent=random.choice([None, 1])).encode())
    for _ in range(random.choice([0, 1, 1, 2, 3])):
        i = random.randrange(len(b) + 1)
        op = random.random()
        if op < 0.4 and b:
            del b[min(i, len(b) - 1)]
        elif op < 0.8:
            b.insert(i, random.choice(alphabet))
        else:
            j = random.randrange(len(b) + 1)
            b[i:i] = b[min(i, j):max(i, j)][:20]
    open("plans/%04d.json" % n, "wb").write(b)
PY
	# a good share of them is valid and takes the item-by-item way to the end
	run -0 agora-helper plan-both "$D" plans/*.json
	assert_output ""
	valid=0
	for f in plans/0*.json; do
		agora-validate "$f" >/dev/null 2>&1 && valid=$((valid + 1))
		[ "$valid" -ge 20 ] && break
	done
	[ "$valid" -ge 20 ]
}

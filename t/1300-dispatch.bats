#!/usr/bin/env bats
# The dispatch executor: subagents in worktrees, patches, needs, outputs.
load lib/common
load lib/artifacts

setup() {
	artifacts_setup
	T=$BATS_TEST_TMPDIR
	mkapp
	conf executor.dispatch.kind dispatch
	conf executor.dispatch.repo "$PWD/app"
	conf executor.dispatch.base main
	conf agora.maxAttempts 1
}

# agent NAME BODY: a subagent, a shell script run in the worktree.
agent() {
	printf '#!/bin/sh\n%s\n' "$2" > "$T/$1.sh"
	chmod +x "$T/$1.sh"
	conf "subagent.$1.command" "$T/$1.sh"
}

# ditem ID SUBAGENT [WORKER-INPUT] [DEPS] [EXTRA]: one dispatch item.
ditem() {
	printf '{"id":"%s","executor":"dispatch","inputs":{"subagent":"%s","workerInput":%s},"depends_on":%s,"resourceLocks":[]%s}' \
		"$1" "$2" "${3:-null}" "${4:-[]}" "${5:+,$5}"
}

# dead PID: the process is gone, or a zombie no one has reaped yet.
dead() {
	local st
	st=$(ps -o stat= -p "$1" | tr -d ' ')
	[ -z "$st" ] || [[ $st == Z* ]]
}

# field RUN ITEM NAME: a string field of the item's item.done line.
field() {
	grep '"event":"item.done"' "$D/runs/$1/status.jsonl" | grep "\"item\":\"$2\"," |
		sed -n "s/.*\"$3\":\"\\([^\"]*\\)\".*/\\1/p"
}

# reason RUN ITEM: the reason of the item's last line that has one.
reason() {
	grep "\"item\":\"$2\"," "$D/runs/$1/status.jsonl" | grep '"reason":' | tail -n 1 |
		sed 's/.*"reason":"\(.*\)"}$/\1/; s/","[a-zA-Z]*":.*//'
}

@test "a subagent runs in a worktree of the base with its input, and its change is captured" {
	agent edit 'f=$(python3 -c "import json,os; print(json.load(open(os.environ[\"AGORA_INPUT\"]))[\"file\"])")
pwd > '"$T"'/pwd
env | sed -n "s/^\(AGORA_[A-Z_]*\)=.*/\1/p" | sort > '"$T"'/env
printf "// edited by %s\n" "$AGORA_ITEM" >> "$f"
printf "\377\376" > new.bin'
	plan p.json r "$(ditem a edit '{"file":"alpha.ts"}')"
	agora-submit p.json
	drive r
	assert_equal "$(outcome r)" succeeded
	assert_equal "$(cat "$T/pwd")" "$D/runs/r/items/a/1/worktree"
	assert_equal "$(cat "$T/env" | tr '\n' ' ')" "AGORA_ATTEMPT AGORA_DIR AGORA_INPUT AGORA_INPUTS_DIR AGORA_ITEM AGORA_OUTPUTS_DIR AGORA_RUN "
	ref=$(field r a resultRef)
	[[ $ref == git:* ]]
	blob=${ref#git:}
	git --git-dir="$S" cat-file blob "$blob" > patch
	assert_equal "$(field r a patchSha256)" "$(sha256sum patch | cut -d' ' -f1)"
	assert_equal "$(field r a base)" "$base"
	# the patch is the worker's change exactly, and plain git applies it
	git clone -q app check
	git -C check apply --index ../patch
	assert_equal "$(tail -n 1 check/alpha.ts)" "// edited by a"
	assert_equal "$(od -An -tx1 check/new.bin | tr -d ' ')" "fffe"
	run -0 git --git-dir="$S" log --format=%s refs/agora/runs/r/a
	assert_output "$(printf 'r/a attempt 1\nbase')"
	assert_equal "$(git --git-dir="$S" rev-parse 'refs/agora/runs/r/a^{tree}')" "$(git -C check write-tree)"
	run -0 agora-show r a
	assert_equal "$output" "$(cat patch)"
}

@test "a subagent that changes nothing is done with no patch" {
	agent idle 'true'
	plan p.json r "$(ditem a idle)"
	agora-submit p.json
	drive r
	assert_equal "$(outcome r)" succeeded
	run -1 grep -q resultRef "$D/runs/r/status.jsonl"
	assert_equal "$(field r a base)" "$base"
	run -1 git --git-dir="$S" rev-parse -q --verify refs/agora/runs/r/a
}

@test "an unknown subagent, or none, is refused at submit" {
	agent edit 'true'
	plan p.json r "$(ditem a nosuch),{\"id\":\"b\",\"executor\":\"dispatch\",\"inputs\":{},\"depends_on\":[],\"resourceLocks\":[]}"
	run -100 --separate-stderr agora-submit p.json
	assert_stderr "$(printf '%s\n' \
		"p.json: \$.items[0].inputs.subagent: unknown subagent 'nosuch' (not in agora.conf)" \
		"p.json: \$.items[1].inputs.subagent: missing required field: the dispatch executor runs a subagent")"
	run -0 ls "$D/inbox/new"
	assert_output ""
}

@test "a subagent gone from agora.conf at fire time fails the item for good" {
	agent edit 'true'
	plan p.json r "$(hold first),$(ditem a edit null '["first"]')"
	agora-submit p.json
	tick
	git config -f "$D/agora.conf" --remove-section subagent.edit
	touch "$T/first.release"
	conf agora.maxAttempts 3
	drive r
	assert_equal "$(outcome r)" failed
	assert_equal "$(reason r a)" "subagent 'edit' is not configured"
	assert_equal "$(grep '"item":"a",' "$D/runs/r/status.jsonl" | grep -c '"event":"item.running"')" 1
}

@test "a missing repository or an unknown base fails the item for good, naming it" {
	agent edit 'true'
	plan p.json r '{"id":"a","executor":"dispatch","inputs":{"subagent":"edit","repo":"nope"},"depends_on":[],"resourceLocks":[]},{"id":"b","executor":"dispatch","inputs":{"subagent":"edit","base":"no-such-branch"},"depends_on":[],"resourceLocks":[]}'
	conf agora.maxAttempts 3
	agora-submit p.json
	drive r
	assert_equal "$(reason r a)" "cannot open repository '$D/nope': No such file or directory"
	assert_equal "$(reason r b)" "unknown base 'no-such-branch' in repository '$PWD/app'"
	assert_equal "$(grep -c '"event":"item.running"' "$D/runs/r/status.jsonl")" 2
}

@test "needs of kind patch: the consumer's worktree holds the upstream patches, its own patch only its change" {
	agent edit 'f=$(python3 -c "import json,os; print(json.load(open(os.environ[\"AGORA_INPUT\"]))[\"file\"])")
printf "// edited by %s\n" "$AGORA_ITEM" >> "$f"'
	agent verify 'grep -q "edited by ea" alpha.ts && grep -q "edited by eb" beta.ts && echo ok > verified'
	plan p.json r "$(ditem ea edit '{"file":"alpha.ts"}'),$(ditem eb edit '{"file":"beta.ts"}'),$(ditem v verify null '[]' '"needs":{"pa":{"from":"ea","select":{"kind":"patch"}},"pb":{"from":"eb","select":{"kind":"patch"}}}')"
	agora-submit p.json
	drive r
	assert_equal "$(outcome r)" succeeded
	git --git-dir="$S" cat-file blob "$(field r v resultRef | sed 's/^git://')" > vpatch
	run -0 grep '^+++ ' vpatch
	assert_output "+++ b/verified"
	# the consumer's commit has base as parent and every change in its tree
	git clone -q app check
	git -C check fetch -q "$S" refs/agora/runs/r/v
	run -0 git -C check show FETCH_HEAD:alpha.ts
	assert_output --partial "edited by ea"
}

@test "conflicting patches fail the consumer, naming both items" {
	agent one 'echo one > shared.ts'
	agent two 'echo two > shared.ts'
	agent verify 'true'
	plan p.json r "$(ditem a one),$(ditem b two '' '["a"]'),$(ditem v verify null '[]' '"needs":{"pa":{"from":"a","select":{"kind":"patch"}},"pb":{"from":"b","select":{"kind":"patch"}}}')"
	sed -i 's/"workerInput":,/"workerInput":null,/' p.json
	agora-submit p.json
	drive r
	assert_equal "$(item_status r v)" failed
	assert_equal "$(reason r v)" "the patch of 'b' conflicts with the patch of 'a' in the worktree of 'v'"
}

@test "needs of kind output: the file is at AGORA_INPUTS_DIR/KEY; a missing one fails the consumer" {
	agent make 'printf "report of %s\n" "$AGORA_ITEM" > "$AGORA_OUTPUTS_DIR/report.txt"'
	agent read 'cp "$AGORA_INPUTS_DIR/rep" '"$T"'/got'
	plan p.json r "$(ditem m make),$(ditem c read null '[]' '"needs":{"rep":{"from":"m","select":{"kind":"output","path":"report.txt"}}}'),$(ditem x read null '[]' '"needs":{"gone":{"from":"m","select":{"kind":"output","path":"nothing.txt"}}}')"
	agora-submit p.json
	drive r
	assert_equal "$(cat "$T/got")" "report of m"
	assert_equal "$(item_status r c)" done
	assert_equal "$(item_status r x)" failed
	assert_equal "$(reason r x)" "unresolved needs 'gone'"
	run -0 grep '"item":"m",' "$D/runs/r/status.jsonl"
	assert_output --partial '"outputs":[{"path":"report.txt","ref":"git:'
}

@test "a needs key of a plan.json edited by hand that leaves inputs/ fails the consumer, and nothing is written there" {
	agent make 'printf "report\n" > "$AGORA_OUTPUTS_DIR/report.txt"'
	agent read 'true'
	plan p.json r "$(ditem m make),$(ditem c read null '[]' '"needs":{"rep":{"from":"m","select":{"kind":"output","path":"report.txt"}}}')"
	agora-ctl -g PAUSE
	agora-submit p.json
	tick
	sed -i 's|"needs":{"rep":|"needs":{"../../../../escaped":|' "$D/runs/r/plan.json"
	agora-ctl -g RESUME
	drive r
	assert_equal "$(item_status r c)" failed
	assert_equal "$(reason r c)" "needs key '../../../../escaped' is not an id"
	[ ! -e "$D/runs/r/escaped" ]
}

@test "an exec item's outputs become output refs too" {
	plan p.json r "$(item e 'echo hi > $AGORA_OUTPUTS_DIR/o.txt; mkdir $AGORA_OUTPUTS_DIR/sub; echo x > $AGORA_OUTPUTS_DIR/sub/y')"
	agora-submit p.json
	drive r
	run -0 grep '"event":"item.done"' "$D/runs/r/status.jsonl"
	assert_output --regexp '"outputs":\[\{"path":"o.txt","ref":"git:[0-9a-f]{40}","size":3\},\{"path":"sub/y","ref":"git:[0-9a-f]{40}","size":2\}\]'
	run -0 agora-show --outputs r e
}

@test "a subagent that fails is retried, then failed; one that times out loses its whole group" {
	agent bad 'echo $AGORA_ATTEMPT >> '"$T"'/tries; exit 3'
	agent slow '(sleep 1000; touch '"$T"'/survived) & echo $! > '"$T"'/child; wait'
	conf subagent.slow.timeout 1
	conf agora.maxAttempts 2
	plan p.json r "$(ditem b bad),$(ditem s slow null '[]' '"maxAttempts":1')"
	agora-submit p.json
	drive r
	assert_equal "$(cat "$T/tries" | tr '\n' ' ')" "1 2 "
	assert_equal "$(reason r b)" "exit 3"
	assert_equal "$(reason r s)" "timeout after 1s"
	wait_for "dead $(cat "$T/child")"
}

@test "a subagent's slots and passEnv come from agora.conf; nothing else of the environment passes" {
	conf slot.llm.capacity 1
	agent look 'env > '"$T"'/env.$AGORA_ITEM'
	conf subagent.look.slots llm
	conf subagent.look.passEnv API_KEY
	plan p.json r "$(ditem a look),$(ditem b look)"
	export API_KEY=k1 SECRET=s3cr3t
	agora-submit p.json
	tick
	run -0 agora-status r
	assert_output --partial "slot 'llm' (1/1 in use)"
	drive r
	run -0 grep -h '^API_KEY=' "$T/env.a" "$T/env.b"
	assert_output "$(printf 'API_KEY=k1\nAPI_KEY=k1')"
	run ! grep -rq s3cr3t "$T"/env.* "$D"
}

@test "the resident supervisor of serve runs dispatch items too" {
	agent edit 'echo served >> alpha.ts'
	plan p.json r "$(ditem a edit)"
	agora-serve -i 60s 2>"$T/serve.err" &
	SERVE=$!
	agora-submit p.json
	run -0 agora-watch -t 60 r
	kill "$SERVE"; wait "$SERVE"
	run -0 agora-show r a
	assert_output --partial "+served"
}

@test "hostile base repository: no filter, hook or fsmonitor of it runs during a dispatch" {
	printf '#!/bin/sh\ntouch %s/ran-$1\ncat\n' "$T" > "$T/evil"
	chmod +x "$T/evil"
	printf '* filter=evil\n' > app/.gitattributes
	git -C app config filter.evil.smudge "$T/evil smudge"
	git -C app config filter.evil.clean "$T/evil clean"
	git -C app config core.fsmonitor "$T/evil fsmonitor"
	mkdir app/hooks
	for h in pre-commit post-checkout post-merge reference-transaction; do
		printf '#!/bin/sh\ntouch %s/ran-%s\n' "$T" "$h" > "app/hooks/$h"
		chmod +x "app/hooks/$h"
	done
	git -C app config core.hooksPath "$PWD/app/hooks"
	GIT_CONFIG_GLOBAL=/dev/null git -C app -c core.hooksPath=/dev/null -c core.fsmonitor=false add .gitattributes
	GIT_CONFIG_GLOBAL=/dev/null git -C app -c core.hooksPath=/dev/null -c core.fsmonitor=false -c filter.evil.clean=cat commit -qm attrs
	rm -f "$T"/ran-*
	agent edit 'echo changed >> alpha.ts'
	plan p.json r "$(ditem a edit)"
	agora-submit p.json
	drive r
	assert_equal "$(outcome r)" succeeded
	run -0 ls "$T"
	refute_output --partial ran-
}

@test "attempts that start together on a base not yet in the store fetch it once, none fails" {
	conf queue.default.concurrency 4
	agent edit 'echo "$AGORA_ITEM" >> alpha.ts'
	bases() { git --git-dir="$D/objects.git" for-each-ref --format=x refs/agora/bases | wc -l; }
	n0=$(bases)
	for round in 1 2 3; do
		# a new base each round, so that every round's four attempts race to fetch it
		echo "round $round" >> app/beta.ts
		git -C app commit -qam "round $round"
		plan p.json "r$round" "$(ditem a edit),$(ditem b edit),$(ditem c edit),$(ditem d edit)"
		agora-submit p.json
		drive "r$round"
		assert_equal "$(outcome "r$round")" succeeded
		run -1 grep -c '"event":"item.retrying"' "$D/runs/r$round/status.jsonl"
		assert_output 0
		assert_equal "$(bases)" "$((n0 + round))"
	done
}

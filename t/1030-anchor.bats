#!/usr/bin/env bats
# Anchors (anchor.c): each sealed run's checkpoint handed to local, dir,
# git and command anchors, with a receipt each; failures are recorded,
# reported and retried.
load lib/common

setup() {
	common_setup
	agora_init
	T=$BATS_TEST_TMPDIR
}

submit() { # submit RUN
	plan "p-$1.json" "$1" "$(item a true)"
	agora-submit "p-$1.json" >/dev/null
}

# receipt RUN ANCHOR KEY: one field of a receipt
receipt() {
	python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print(json.dumps(v) if not isinstance(v, str) else v)' \
		"$D/audit/receipts/$1/$2.json" "$3"
}

@test "the default local anchor copies the checkpoint into audit/anchors/, tier detect" {
	submit r
	drive r
	cmp "$D/runs/r/checkpoint" "$D/audit/anchors/local/r.checkpoint"
	run -0 cat "$D/audit/receipts/r/local.json"
	cp=$(sha256sum "$D/runs/r/checkpoint" | cut -d' ' -f1)
	assert_output --regexp "^\{\"anchor\":\"local\",\"kind\":\"local\",\"tier\":\"detect\",\"run\":\"r\",\"checkpoint\":\"$cp\",\"at\":\"[0-9T:.-]+Z\",\"attempts\":1,\"file\":\"$D/audit/anchors/local/r.checkpoint\",\"ok\":true\}\$"
	[ -z "$(ls "$D/audit/pending")" ]
}

@test "a dir anchor writes a create-only copy under its path, tier external" {
	mkdir worm
	conf anchor.worm.kind dir
	conf anchor.worm.path "$T/worm"
	submit r
	drive r
	cmp "$D/runs/r/checkpoint" worm/r.checkpoint
	run -0 stat -c %a worm/r.checkpoint
	assert_output 444
	assert_equal "$(receipt r worm tier)" external
	assert_equal "$(receipt r worm ok)" true
	run -0 agora-helper anchor-read "$D" worm r
	assert_output "$(cat "$D/runs/r/checkpoint")"
}

@test "a dir anchor that holds other bytes fails, is recorded and reported, and is retried" {
	mkdir worm
	echo forged > worm/r.checkpoint
	conf anchor.worm.kind dir
	conf anchor.worm.path worm-rel
	ln -s "$T/worm" "$D/worm-rel"
	submit r
	wait_for 'agora-reconcile 2>/dev/null; [ -e "$D/audit/receipts/r/worm.json" ]'
	assert_equal "$(receipt r worm ok)" false
	assert_equal "$(receipt r worm detail)" "'$D/worm-rel/r.checkpoint' exists with other bytes"
	[ -e "$D/audit/pending/r" ]
	# the local anchor went through all the same
	assert_equal "$(receipt r local ok)" true
	run -0 --separate-stderr agora-reconcile
	assert_stderr "agora-reconcile: anchor 'worm' of run 'r' failed: '$D/worm-rel/r.checkpoint' exists with other bytes"
	assert_equal "$(receipt r worm attempts)" 2
	rm -f worm/r.checkpoint
	run -0 --separate-stderr agora-reconcile
	assert_stderr ""
	assert_equal "$(receipt r worm ok)" true
	assert_equal "$(receipt r worm attempts)" 3
	cmp "$D/runs/r/checkpoint" worm/r.checkpoint
	[ ! -e "$D/audit/pending/r" ]
}

@test "a dir anchor whose directory is missing fails until it appears" {
	conf anchor.worm.kind dir
	conf anchor.worm.path "$T/worm"
	submit r
	wait_for 'agora-reconcile 2>/dev/null; [ -e "$D/audit/receipts/r/worm.json" ]'
	assert_equal "$(receipt r worm detail)" "anchor directory '$T/worm' does not exist"
	mkdir worm
	agora-reconcile
	assert_equal "$(receipt r worm ok)" true
}

make_remote() { # a bare repository that refuses non-fast-forward pushes and deletes
	git init -q --bare "$1"
	git --git-dir="$1" config receive.denyNonFastForwards true
	git --git-dir="$1" config receive.denyDeletes true
}

@test "a git anchor pushes a commit holding the checkpoint, one on top of the other" {
	make_remote remote.git
	conf anchor.origin.kind git
	conf anchor.origin.remote "$T/remote.git"
	submit r1
	drive r1
	submit r2
	drive r2
	run -0 git --git-dir=remote.git show refs/heads/agora-anchors:r1.checkpoint
	assert_output "$(cat "$D/runs/r1/checkpoint")"
	run -0 git --git-dir=remote.git show refs/heads/agora-anchors:r2.checkpoint
	assert_output "$(cat "$D/runs/r2/checkpoint")"
	assert_equal "$(git --git-dir=remote.git rev-list --count refs/heads/agora-anchors)" 2
	assert_equal "$(receipt r2 origin commit)" "$(git --git-dir=remote.git rev-parse refs/heads/agora-anchors)"
	assert_equal "$(receipt r2 origin tier)" external
	assert_equal "$(receipt r2 origin ref)" refs/heads/agora-anchors
	run -0 agora-helper anchor-read "$D" origin r1
	assert_output "$(cat "$D/runs/r1/checkpoint")"
}

@test "a git anchor builds on what others pushed to the ref, never forcing" {
	make_remote remote.git
	git init -q work
	git -C work commit -q --allow-empty -m "someone else"
	git -C work push -q "$T/remote.git" HEAD:refs/heads/agora-anchors
	theirs=$(git -C work rev-parse HEAD)
	conf anchor.origin.kind git
	conf anchor.origin.remote "$T/remote.git"
	submit r
	drive r
	assert_equal "$(git --git-dir=remote.git rev-parse refs/heads/agora-anchors^)" "$theirs"
	assert_equal "$(receipt r origin ok)" true
}

@test "a git anchor whose remote is missing fails, then succeeds once it exists" {
	conf anchor.origin.kind git
	conf anchor.origin.remote remote.git
	conf anchor.origin.ref refs/heads/audit
	submit r
	wait_for 'agora-reconcile 2>/dev/null; [ -e "$D/audit/receipts/r/origin.json" ]'
	assert_equal "$(receipt r origin ok)" false
	run -0 receipt r origin detail
	assert_output --partial "cannot fetch 'refs/heads/audit' from '$D/remote.git'"
	make_remote "$D/remote.git"
	agora-reconcile
	assert_equal "$(receipt r origin ok)" true
	run -0 git --git-dir="$D/remote.git" show refs/heads/audit:r.checkpoint
	assert_output "$(cat "$D/runs/r/checkpoint")"
}

@test "a command anchor gets the checkpoint on stdin; its stdout is the receipt" {
	conf anchor.notary.kind command
	conf anchor.notary.command "cat > $T/got; echo \"stamped \$AGORA_RUN by \$AGORA_ANCHOR\""
	submit r
	drive r
	cmp "$D/runs/r/checkpoint" got
	assert_equal "$(receipt r notary receipt)" "stamped r by notary"
	assert_equal "$(receipt r notary tier)" external
}

@test "a failing command anchor is recorded, reported at every tick and retried" {
	conf anchor.notary.kind command
	conf anchor.notary.command "cat >/dev/null; [ -e $T/ok ] || exit 3; echo fine"
	submit r
	wait_for 'agora-reconcile 2>/dev/null; [ -e "$D/audit/receipts/r/notary.json" ]'
	assert_equal "$(receipt r notary ok)" false
	assert_equal "$(receipt r notary detail)" "anchor command exited 3"
	run -0 --separate-stderr agora-reconcile
	assert_stderr "agora-reconcile: anchor 'notary' of run 'r' failed: anchor command exited 3"
	run -0 agora-status r
	assert_line "anchor notary (command): failed, 2 attempts: anchor command exited 3"
	touch ok
	run -0 --separate-stderr agora-reconcile
	assert_stderr ""
	assert_equal "$(receipt r notary ok)" true
	assert_equal "$(receipt r notary receipt)" fine
	[ ! -e "$D/audit/pending/r" ]
	run -0 agora-status r
	refute_line --partial "anchor notary"
}

@test "a receipt edited to count INT64_MAX attempts counts from 1 again, and the anchor is retried" {
	conf anchor.notary.kind command
	conf anchor.notary.command "cat >/dev/null; [ -e $T/ok ] || exit 3; echo fine"
	submit r
	wait_for 'agora-reconcile 2>/dev/null; [ -e "$D/audit/receipts/r/notary.json" ]'
	sed -i 's/"attempts":1,/"attempts":9223372036854775807,/' "$D/audit/receipts/r/notary.json"
	run -0 --separate-stderr agora-reconcile
	assert_stderr "agora-reconcile: anchor 'notary' of run 'r' failed: anchor command exited 3"
	assert_equal "$(receipt r notary attempts)" 1
}

@test "an anchor without its kind, or without its path, is a configuration error" {
	# a tick with work reads agora.conf (an idle one does not)
	plan p.json r "$(item a true)"
	cp p.json "$D/inbox/new/0000000001.000000.1,r"
	conf anchor.x.path /tmp
	run -100 --separate-stderr agora-reconcile
	assert_stderr "agora-reconcile: $D/agora.conf: anchor 'x' has no kind"
	git config -f "$D/agora.conf" --remove-section anchor.x
	conf anchor.y.kind dir
	run -100 --separate-stderr agora-reconcile
	assert_stderr "agora-reconcile: $D/agora.conf: anchor 'y' of kind dir has no path"
	conf anchor.y.kind tape
	run -100 --separate-stderr agora-reconcile
	assert_stderr "agora-reconcile: $D/agora.conf: bad value 'tape' for 'anchor.y.kind': expected 'local', 'dir', 'git' or 'command'"
}

anchor_crash() { # crash at POINT once, then drive; every anchor holds the checkpoint once
	mkdir -p worm
	conf anchor.worm.kind dir
	conf anchor.worm.path "$T/worm"
	submit r
	local deadline=$((SECONDS + 60)) rc
	while :; do
		rc=0
		AGORA_TEST_CRASH=$1 agora-reconcile >/dev/null 2>&1 || rc=$?
		[ "$rc" -eq 137 ] && break
		[ "$SECONDS" -lt "$deadline" ] || { echo "crash point $1 never reached"; return 1; }
		sleep 0.02
	done
	drive r
	agora-reconcile
	cmp "$D/runs/r/checkpoint" worm/r.checkpoint
	cmp "$D/runs/r/checkpoint" "$D/audit/anchors/local/r.checkpoint"
	assert_equal "$(receipt r worm ok)" true
	assert_equal "$(receipt r local ok)" true
	[ ! -e "$D/audit/pending/r" ]
	[ ! -e "$D/active/r" ]
}

@test "crash at anchor-pending (listed in audit/pending, still active)" { anchor_crash anchor-pending; }
@test "crash at anchor-put (an anchor holds it, no receipt yet)" { anchor_crash anchor-put; }

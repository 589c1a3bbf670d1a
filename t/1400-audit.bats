#!/usr/bin/env bats
# agora-audit builds a run's evidence bundle and reports on it;
# agora-verify checks a bundle offline with the public key.
load lib/common
load lib/artifacts
load lib/bundle

setup() {
	bundle_setup
}

# summary_ok RUN [ANCHOR-LINE]: the first lines of a report on the sealed run
# RUN, every check passing; the anchor line of agora-verify without --anchor
# unless given.
summary_ok() {
	local root
	root=$(root_of "$LOG" 8)
	cat <<OUT
run:       $1
intact:    yes
claim:     tamper-detecting
guarantee: detect
chain      ok   9 lines, each line's prev the SHA-256 of the line before, and the plan's SHA-256 in line 1
root       ok   the root of lines 1-8, up to run.completed, is $root, as the checkpoint says; run.sealed seals it as entry 0 of the global log of 1
signature  ok   the checkpoint and the global checkpoint are signed by key '$KEYNAME' (id $KEYID)
${2:-anchor     n/a  no anchor to read the checkpoint back from}
OUT
}

@test "agora-audit of a sealed run: intact, tamper-detecting, every check" {
	sealed_run r
	run -0 --separate-stderr agora-audit r
	assert_output "$(summary_ok r "anchor     ok   anchor 'local' (local) holds the same checkpoint")
artifacts  ok   2 patches and 2 outputs re-read from '$D/objects.git', each patch's SHA-256 its patchSha256
handoff    ok   2 consumed refs, each produced by the done item the plan names"
	assert_stderr ""
}

@test "agora-audit --out writes the bundle, and agora-verify passes it with the public key alone" {
	sealed_run r
	run -0 agora-audit --out b.json r
	# verify needs nothing of the state tree but the public key
	cp "$PUB" signing.pub
	mv "$D" elsewhere
	run -0 --separate-stderr agora-verify --key signing.pub b.json
	D=$PWD/elsewhere LOG=$PWD/elsewhere/runs/r/status.jsonl
	KEYNAME=$(agora-helper key-info signing.pub | sed -n 's/^name //p')
	assert_output "$(summary_ok r)
artifacts  n/a  2 patches and 2 outputs not re-hashed: no object store
handoff    ok   2 consumed refs, each produced by the done item the plan names"
	assert_stderr ""
	run -0 agora-verify --key signing.pub --objects elsewhere/objects.git b.json
	assert_line "artifacts  ok   2 patches and 2 outputs re-read from 'elsewhere/objects.git', each patch's SHA-256 its patchSha256"
}

@test "the bundle carries the exact bytes of the log, the plan and the checkpoint" {
	sealed_run r
	agora-audit --json r > b.json
	run -0 jq -r '.format, .version, .run, (.items | map(.id + " " + .status + " " + (.attempts | tostring)) | .[])' b.json
	assert_output "agora-bundle
1
r
edit done 1
use done 1"
	jq -r .log.base64 b.json | base64 -d > log.bytes
	cmp log.bytes "$LOG"
	jq -r .plan.base64 b.json | base64 -d > plan.bytes
	cmp plan.bytes "$D/runs/r/plan.json"
	jq -r .checkpoint.base64 b.json | base64 -d > cp.bytes
	cmp cp.bytes "$D/runs/r/checkpoint"
	# the items say what item.done and item.running say
	assert_equal "$(jq -r '.items[0].resultRef' b.json)" "$(done_field r edit resultRef)"
	assert_equal "$(jq -r '.items[1].needs.code' b.json)" "$(done_field r edit resultRef)"
	assert_equal "$(jq -r '.items[1].needs.notes' b.json)" "$(jq -r '.items[0].outputs[0].ref' b.json)"
	# the same sealed run gives the same bundle, byte for byte
	agora-audit --out again.json r
	cmp b.json again.json
}

@test "agora-audit of a run that is not sealed yet: not intact, and it says why" {
	agora-ctl -g PAUSE
	plan p.json held "$(dispatch_item edit)"
	agora-submit p.json > /dev/null
	tick
	run -1 --separate-stderr agora-audit held
	assert_line "intact:    no"
	assert_line "failure:   root"
	assert_line "root       FAIL no checkpoint: run 'held' is not sealed yet"
	assert_line "signature  n/a  no checkpoint"
	assert_stderr "agora-audit: run 'held' is not intact: root failed"
}

@test "agora-audit of an unknown run exits 100" {
	run -100 --separate-stderr agora-audit nope
	assert_output ""
	assert_stderr "agora-audit: unknown run 'nope'"
}

@test "agora-audit and agora-verify refuse bad usage with exit 100" {
	run -100 --separate-stderr agora-audit
	assert_stderr "usage: agora-audit [-d dir] [--out file] [--json] run"
	run -100 --separate-stderr agora-verify b.json
	assert_equal "${stderr_lines[0]}" "usage: agora-verify --key pub ... [--anchor kind:where ...] [--objects dir] [--json] bundle"
	run -100 --separate-stderr agora-verify --key "$PUB" --anchor s3:bucket b.json
	assert_stderr "agora-verify: anchor 's3:bucket': the kind is dir or git, not 's3'"
}

@test "agora-verify of a file that is not a bundle exits 100, naming what is wrong" {
	echo '{"format":"other"}' > x.json
	run -100 --separate-stderr agora-verify --key "$PUB" x.json
	assert_stderr "agora-verify: not an agora bundle: no \"format\": \"agora-bundle\""
	echo 'nope' > y.json
	run -100 --separate-stderr agora-verify --key "$PUB" y.json
	assert_stderr "agora-verify: bundle 'y.json' is not JSON: line 1: '[' or '{' expected near 'nope'"
	printf '{"format":"agora-bundle",\001}' > z.json
	run -100 --separate-stderr agora-verify --key "$PUB" z.json
	assert_stderr "agora-verify: bundle 'z.json' is not JSON: line 1: string or '}' expected near '\\x01'"
	run -100 --separate-stderr agora-verify --key "$PUB" missing.json
	assert_stderr "agora-verify: cannot read 'missing.json': No such file or directory"
}

@test "agora-verify reads a key spelled with an escape as JSON does, not as want of memory" {
	# "base6\u0034" is "base64" to JSON: the fast reader's "@7" must not stand for a cut value
	printf '{"format":"agora-bundle","version":1,"run":"r","items":[],"plan":{"base64":"AAAA"},"log":{"base64":"AAAA"},"x":{"base6\\u0034":"@7"}}' > b.json
	run -1 --separate-stderr agora-verify --key "$PUB" b.json
	assert_equal "${stderr_lines[0]}" "agora-verify: chain: line 1 has no newline at its end"
	assert_equal "${#stderr_lines[@]}" 3
}

@test "agora-verify --json prints the report" {
	sealed_run r
	agora-audit --out b.json r
	run -0 --separate-stderr agora-verify --json --key "$PUB" b.json
	echo "$output" > report.json
	run -0 jq -c '[.intact, .claim, .guarantee, .failure, (.checks | to_entries | map(.key + "=" + (.value.ok | tostring)))]' report.json
	assert_output '[true,"tamper-detecting","detect",null,["chain=true","root=true","signature=true","anchor=n/a","artifacts=n/a","handoff=true"]]'
}

@test "a run without handoffs or artifacts: those checks do not apply" {
	plan p.json plain "$(item a true)"
	agora-submit p.json > /dev/null
	drive plain
	run -0 agora-audit plain
	assert_line "artifacts  n/a  no item made a patch or outputs"
	assert_line "handoff    n/a  no handoff edges"
}

@test "the chain binds the plan: an edited plan.json fails the chain check" {
	sealed_run r
	chmod u+w "$D/runs/r/plan.json"
	sed -i 's/"priority":0/"priority":1/' "$D/runs/r/plan.json"
	run -1 --separate-stderr agora-audit --out b.json r
	assert_line "chain      FAIL the plan's SHA-256 is not the planSha256 of line 1"
	run -1 --separate-stderr agora-verify --key "$PUB" b.json
	assert_stderr "agora-verify: chain: the plan's SHA-256 is not the planSha256 of line 1"
}

@test "handoff: an item that ran without a product its needs name fails the check" {
	# agora-helper done logs attempts that consumed nothing
	agora-ctl -g PAUSE
	plan p.json h "$(dispatch_item edit),$(dispatch_item use '"needs":{"code":{"from":"edit","select":{"kind":"patch"}}}')"
	agora-submit p.json > /dev/null
	tick
	worktree wt
	printf 'x\n' >> wt/alpha.ts
	done_item h edit wt
	worktree wt2 "$patch"
	done_item h use wt2 - "$patch"
	release h
	run -1 --separate-stderr agora-audit h
	assert_line "handoff    FAIL line 6: item 'use' ran without 'code', the product of 'edit' that it needs"
	assert_stderr "agora-audit: run 'h' is not intact: handoff failed"
}

@test "an external anchor read back raises the claim to tamper-evident" {
	mkdir worm
	conf anchor.worm.kind dir
	conf anchor.worm.path "$T/worm"
	sealed_run r
	run -0 agora-audit --out b.json r
	assert_line "claim:     tamper-evident"
	assert_line "guarantee: external"
	assert_line "anchor     ok   anchor 'local' (local), anchor 'worm' (dir) hold the same checkpoint"
	run -0 jq -c '[.anchors[] | [.anchor, .kind, .tier, .receipt.ok]]' b.json
	assert_output '[["local","local","detect",true],["worm","dir","external",true]]'
	# verify reads the anchor itself; without it, the claim stays tamper-detecting
	run -0 agora-verify --key "$PUB" b.json
	assert_line "claim:     tamper-detecting"
	run -0 agora-verify --key "$PUB" --anchor dir:worm b.json
	assert_line "claim:     tamper-evident"
	assert_line "guarantee: external"
	assert_line "anchor     ok   dir anchor 'worm' holds the same checkpoint"
}

@test "a git anchor is read back from the remote's ref" {
	git init -q --bare anchors.git
	git -C anchors.git config receive.denyNonFastForwards true
	git -C anchors.git config receive.denyDeletes true
	conf anchor.origin.kind git
	conf anchor.origin.remote "$T/anchors.git"
	sealed_run r
	run -0 agora-audit --out b.json r
	assert_line "claim:     tamper-evident"
	run -0 agora-verify --key "$PUB" --anchor git:anchors.git b.json
	assert_line "claim:     tamper-evident"
	assert_line "anchor     ok   git anchor 'anchors.git' holds the same checkpoint"
}

@test "a command anchor keeps no copy to read back: its receipt is in the bundle, the claim stays" {
	conf anchor.notary.kind command
	conf anchor.notary.command "cat > $T/notarized; echo receipt-42"
	sealed_run r
	run -0 agora-audit --out b.json r
	assert_line "claim:     tamper-detecting"
	assert_line "anchor     ok   anchor 'local' (local) holds the same checkpoint; anchor 'notary' (command) keeps no copy to read back"
	run -0 jq -r '.anchors[1].receipt.receipt' b.json
	assert_output "receipt-42"
}

@test "agora-verify --anchor of an anchor without the checkpoint fails the anchor check" {
	sealed_run r
	agora-audit --out b.json r
	mkdir empty
	run -1 --separate-stderr agora-verify --key "$PUB" --anchor dir:empty b.json
	assert_stderr "agora-verify: anchor: dir anchor 'empty': cannot read './empty/r.checkpoint': No such file or directory"
}

@test "after a key rotation, old runs verify with the old key kept beside the new one" {
	sealed_run r
	cp "$D/keys/signing.pub" old.pub
	# rotate, as agora(7) says, keeping the old public key in keys/
	cp "$D/keys/signing.pub" "$D/keys/2026-old.pub"
	openssl genpkey -algorithm ed25519 -out "$D/keys/signing.key" 2> /dev/null
	chmod 600 "$D/keys/signing.key"
	openssl pkey -in "$D/keys/signing.key" -pubout -out "$D/keys/signing.pub"
	sealed_run r2
	run -0 agora-audit r
	run -0 agora-audit r2
	agora-audit --out b.json r
	run -1 agora-verify --key "$PUB" b.json
	run -0 agora-verify --key "$PUB" --key old.pub b.json
	run -1 agora-verify --key "$PUB" --log "$D"
	run -0 agora-verify --key old.pub --key "$PUB" --log "$D"
}

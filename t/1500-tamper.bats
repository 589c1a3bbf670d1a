#!/usr/bin/env bats
# The tamper campaign: each change to a sealed run makes agora-verify exit 1
# and name the check that caught it.
load lib/common
load lib/artifacts
load lib/bundle

setup() {
	bundle_setup
	sealed_run r
}

# audit_verify [VERIFY-OPTION...]: the bundle of r as the state is now, then
# verify it; the exit status and stderr of verify are the test's.
audit_verify() {
	agora-audit --out b.json r > /dev/null 2>&1 || true
	run -1 --separate-stderr agora-verify --key "$PUB" "$@" b.json
}

@test "every single-bit flip of every byte of status.jsonl is caught" {
	agora-audit --out b.json r
	local n
	n=$(stat -c %s "$LOG")
	run -0 --separate-stderr agora-helper tamper-bytes b.json "$PUB"
	assert_equal "${lines[0]}" "$((n * 8)) flips of $n bytes, 0 undetected"
	# the lines the tree covers fail the chain; run.sealed, the root check
	assert_equal "${#lines[@]}" 3
	[[ ${lines[1]} =~ ^chain\ [0-9]+$ ]]
	[[ ${lines[2]} =~ ^root\ [0-9]+$ ]]
}

@test "a flipped byte in each line, through agora-verify: chain or root is named" {
	local off=0 len nr=0 line pre
	cp "$LOG" log.orig
	while IFS= read -r -u 4 line; do
		nr=$((nr + 1))
		len=$((${#line} + 1))
		cp log.orig "$LOG"
		# the first digit of the year in at: 2 becomes 3, still a time
		pre=${line%%'"at":"'*}
		flip "$LOG" $((off + ${#pre} + 6))
		audit_verify
		if [ "$nr" -lt 9 ]; then
			assert_equal "${stderr_lines[0]}" "agora-verify: chain: line $((nr + 1)): prev is not the SHA-256 of line $nr"
		else
			assert_equal "${stderr_lines[0]}" "agora-verify: root: line 9 (run.sealed): its at is not run.completed's at"
		fi
		off=$((off + len))
	done 4< log.orig
	assert_equal "$nr" 9
}

@test "a deleted line fails the chain and the root" {
	local want got
	want=$(root_of "$LOG" 8)
	sed -i 3d "$LOG"
	got=$(root_of "$LOG" 8)
	audit_verify
	assert_equal "${stderr_lines[0]}" "agora-verify: chain: line 3: seq is not 2"
	assert_equal "${stderr_lines[1]}" "agora-verify: root: the root of lines 1-8 is $got, the checkpoint says $want"
	assert_equal "${#stderr_lines[@]}" 2
}

@test "two swapped lines fail the chain and the root" {
	local want got
	want=$(root_of "$LOG" 8)
	sed -i '3{h;d};4{G}' "$LOG"
	got=$(root_of "$LOG" 8)
	audit_verify
	assert_equal "${stderr_lines[0]}" "agora-verify: chain: line 3: seq is not 2"
	assert_equal "${stderr_lines[1]}" "agora-verify: root: the root of lines 1-8 is $got, the checkpoint says $want"
	assert_equal "${#stderr_lines[@]}" 2
}

@test "a log truncated at a line fails the root; in a line, the chain too" {
	head -n 6 "$LOG" > log.cut
	cat log.cut > "$LOG"
	audit_verify
	assert_stderr "agora-verify: root: the checkpoint covers 8 lines, the log has 6"
	truncate -s -10 "$LOG"
	audit_verify
	assert_equal "${stderr_lines[0]}" "agora-verify: chain: line 6 has no newline at its end"
	assert_equal "${stderr_lines[1]}" "agora-verify: root: the checkpoint covers 8 lines, the log has 5"
}

@test "a line appended after run.sealed fails the root" {
	tail -n 1 "$LOG" >> "$LOG"
	audit_verify
	assert_equal "${stderr_lines[0]}" "agora-verify: chain: line 10: seq is not 9"
	assert_equal "${stderr_lines[1]}" "agora-verify: root: 1 line after run.sealed (line 9): a sealed run takes no more lines"
}

@test "an edited patch blob fails the artifacts check, with --objects" {
	local ref blob obj other
	ref=$(done_field r edit resultRef)
	blob=${ref#git:}
	obj=$S/objects/${blob:0:2}/${blob:2}
	# another blob's object in its place: libgit2 reads it, and finds the id wrong
	other=$(git --git-dir="$S" hash-object -w --stdin <<< 'forged patch')
	chmod u+w "$obj"
	cp "$S/objects/${other:0:2}/${other:2}" "$obj"
	audit_verify --objects "$S"
	assert_stderr "agora-verify: artifacts: item 'edit': patch $blob cannot be read from '$S': object hash mismatch - expected $blob but got $other"
	# and without the object store, nothing of it is checked
	run -0 agora-verify --key "$PUB" b.json
}

@test "a removed patch blob fails the artifacts check, with --objects" {
	local ref blob
	ref=$(done_field r use resultRef)
	blob=${ref#git:}
	rm -f "$S/objects/${blob:0:2}/${blob:2}"
	audit_verify --objects "$S"
	assert_stderr "agora-verify: artifacts: item 'use': patch $blob is not in '$S'"
}

@test "an edited checkpoint fails the root and the signature" {
	local cp=$D/runs/r/checkpoint
	chmod u+w "$cp"
	sed -i '2s/^8$/7/' "$cp"
	audit_verify
	assert_equal "${stderr_lines[0]}" "agora-verify: root: the root of lines 1-7 is $(root_of "$LOG" 7), the checkpoint says $(root_of "$LOG" 8)"
	assert_equal "${stderr_lines[1]}" "agora-verify: signature: signature by key '$KEYNAME' (id $KEYID) does not verify"
}

@test "an edited signature fails the signature check" {
	local cp=$D/runs/r/checkpoint
	chmod u+w "$cp"
	# one base64 digit of the signature, past the key id
	python3 -c 'import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); i = len(b) - 10
b[i] = ord("A") if b[i] != ord("A") else ord("B"); open(p, "wb").write(b)' "$cp"
	audit_verify
	# run.sealed names the checkpoint by its hash, so the root check sees it too
	assert_equal "${stderr_lines[0]}" "agora-verify: root: line 9 (run.sealed): its checkpoint is not the SHA-256 of the checkpoint"
	assert_equal "${stderr_lines[1]}" "agora-verify: signature: signature by key '$KEYNAME' (id $KEYID) does not verify"
}

@test "another key fails the signature check" {
	agora-init other > /dev/null
	agora-audit --out b.json r
	run -1 --separate-stderr agora-verify --key other/keys/signing.pub b.json
	local name id
	name=$(agora-helper key-info other/keys/signing.pub | sed -n 's/^name //p')
	id=$(agora-helper key-info other/keys/signing.pub | sed -n 's/^id //p')
	assert_stderr "agora-verify: signature: no signature by key '$name' (id $id)"
	assert_line "failure:   signature"
}

@test "a bundle whose log is forged and re-chained fails the root" {
	# a forger without the key rewrites a result and mends every prev after it
	cp "$LOG" log.orig
	agora-audit --out b.json r
	python3 - "$LOG" <<'PY'
import hashlib, sys
lines = open(sys.argv[1], "rb").read().split(b"\n")[:-1]
lines[3] = lines[3].replace(b'"exit":0', b'"exit":0 ')
prev = None
out = []
for i, l in enumerate(lines):
    if prev is not None:
        j = l.rindex(b'"prev":"') + 8
        l = l[:j] + prev.encode() + l[j + 64:]
    out.append(l)
    prev = hashlib.sha256(l).hexdigest()
open(sys.argv[1], "wb").write(b"\n".join(out) + b"\n")
PY
	audit_verify
	assert_equal "${stderr_lines[0]}" "agora-verify: root: the root of lines 1-8 is $(root_of "$LOG" 8), the checkpoint says $(root_of log.orig 8)"
}

@test "a plan whose item line is not an object, bound to a re-chained log, fails the root and leaks nothing" {
	agora-audit --out b.json r
	python3 - b.json <<'PY'
import base64, hashlib, json, sys
b = json.load(open(sys.argv[1]))
plan = base64.b64decode(b["plan"]["base64"]).split(b"\n")
plan[1] = b"[1],"
plan = b"\n".join(plan)
lines = base64.b64decode(b["log"]["base64"]).split(b"\n")[:-1]
j = lines[0].index(b'"planSha256":"') + 14
lines[0] = lines[0][:j] + hashlib.sha256(plan).hexdigest().encode() + lines[0][j + 64:]
for i in range(1, len(lines)):
    j = lines[i].rindex(b'"prev":"') + 8
    lines[i] = lines[i][:j] + hashlib.sha256(lines[i - 1]).hexdigest().encode() + lines[i][j + 64:]
b["plan"]["base64"] = base64.b64encode(plan).decode()
b["log"]["base64"] = base64.b64encode(b"\n".join(lines) + b"\n").decode()
json.dump(b, open(sys.argv[1], "w"))
PY
	# in a sanitizer build, LeakSanitizer makes the exit 23 at a leak
	ASAN_OPTIONS=detect_leaks=1:exitcode=23 run -1 --separate-stderr agora-verify --key "$PUB" b.json
	[[ ${stderr_lines[0]} == "agora-verify: root: the root of lines 1-8 is "*", the checkpoint says $(root_of "$LOG" 8)" ]]
	assert_equal "${stderr_lines[1]}" "agora-verify: artifacts: the bundle's item 'use' is not what the log says of it"
	assert_equal "${stderr_lines[2]}" "agora-verify: handoff: line 6: item 'use' consumed $(done_field r edit resultRef) for 'code', which no done item of run 'r' produced before it"
	assert_equal "${#stderr_lines[@]}" 3
}

@test "an item id with a newline in a forged log is named on one line, the newline as \\x0a" {
	agora-audit --out b.json r
	python3 - b.json <<'PY'
import base64, json, sys
b = json.load(open(sys.argv[1]))
log = base64.b64decode(b["log"]["base64"]) + b'{"event":"item.ready","item":"a\\nb"}\n'
b["log"]["base64"] = base64.b64encode(log).decode()
json.dump(b, open(sys.argv[1], "w"))
PY
	run -1 --separate-stderr agora-verify --key "$PUB" b.json
	assert_equal "${stderr_lines[0]}" "agora-verify: chain: line 10: seq is not 9"
	assert_equal "${stderr_lines[1]}" "agora-verify: root: 1 line after run.sealed (line 9): a sealed run takes no more lines"
	assert_equal "${stderr_lines[2]}" "agora-verify: artifacts: the bundle does not list item 'a\\x0ab'"
	assert_equal "${#stderr_lines[@]}" 3
	# a detail cut short inside a UTF-8 sequence keeps its check in the report
	agora-audit --out b.json r
	python3 - b.json <<'PY'
import base64, json, sys
b = json.load(open(sys.argv[1]))
log = base64.b64decode(b["log"]["base64"]) + ('{"event":"item.ready","item":"x%s"}\n' % ("\u00e9" * 400)).encode()
b["log"]["base64"] = base64.b64encode(log).decode()
json.dump(b, open(sys.argv[1], "w"))
PY
	run -1 --separate-stderr agora-verify --json --key "$PUB" b.json
	run -0 jq -r '.checks | keys_unsorted | join(" ")' <<< "$output"
	assert_output "chain root signature anchor artifacts handoff"
}

@test "the global log of an untouched tree verifies, and extends its earlier checkpoints" {
	cp "$D/audit/checkpoint" first.cp
	sealed_run r2
	run -0 --separate-stderr agora-verify --key "$PUB" --log "$D" --since first.cp
	assert_output "log:         $D/audit, 2 entries, checkpoint of 2
intact:      yes
checkpoints  ok   3 checkpoints (sizes 0-2), each signed, of the log's first entries, and consistent with the one before
runs         ok   2 sealed runs, each with the checkpoint and the log its entry names
since        ok   the log of 2 entries extends 'first.cp', of 1 (RFC 6962 consistency proof)"
	assert_stderr ""
}

@test "a whole run removed fails agora-verify --log" {
	sealed_run r2
	rm -rf "$D/runs/r"
	run -1 --separate-stderr agora-verify --key "$PUB" --log "$D"
	assert_line "failure:     runs"
	assert_stderr "agora-verify: runs: entry 0, run 'r': cannot read '$D/runs/r/checkpoint': No such file or directory"
}

@test "a run's entry removed from the global log fails agora-verify --log" {
	sealed_run r2
	sed -i 1d "$D/audit/log.jsonl"
	run -1 --separate-stderr agora-verify --key "$PUB" --log "$D"
	assert_stderr "agora-verify: checkpoints: audit/checkpoint: it covers 2 entries, the log has 1"
}

@test "a run rewritten whole, its checkpoint kept, fails agora-verify --log" {
	# the forger re-chains the log (see above); the checkpoint still names the old root
	sed -i 's/"exit":0/"exit":0 /' "$LOG"
	run -1 --separate-stderr agora-verify --key "$PUB" --log "$D"
	assert_stderr "agora-verify: runs: entry 0, run 'r': the root of its status.jsonl is not the entry's"
}

@test "a global checkpoint removed fails agora-verify --log" {
	sealed_run r2
	rm "$D/audit/checkpoints/1"
	run -1 --separate-stderr agora-verify --key "$PUB" --log "$D"
	assert_stderr "agora-verify: checkpoints: cannot read '$D/audit/checkpoints/1': No such file or directory"
}

@test "history rewritten with the key itself is caught by an earlier checkpoint kept elsewhere" {
	cp "$D/audit/checkpoint" kept.cp
	# the operator drops run r and starts the global log again, signing all anew
	rm -rf "$D/audit/log.jsonl" "$D/audit/checkpoint" "$D/audit/checkpoints" "$D/runs/r"
	sealed_run s
	run -0 agora-verify --key "$PUB" --log "$D"
	run -1 --separate-stderr agora-verify --key "$PUB" --log "$D" --since kept.cp
	assert_stderr "agora-verify: since: 'kept.cp': its root is not the root of the log's first 1 entries"
}

@test "an edited anchor copy fails the anchor check" {
	local copy=$D/audit/anchors/local/r.checkpoint
	chmod u+w "$copy"
	sed -i '2s/^8$/7/' "$copy"
	audit_verify --anchor "dir:$D/audit/anchors/local"
	assert_stderr "agora-verify: anchor: dir anchor '$D/audit/anchors/local' holds another checkpoint for run 'r'"
	# agora-audit reads the configured anchors back too
	run -1 --separate-stderr agora-audit r
	assert_line "anchor     FAIL anchor 'local' (local) holds another checkpoint for run 'r'"
	assert_stderr "agora-audit: run 'r' is not intact: anchor failed"
}

#!/usr/bin/env bats
# Sealing (audit.c, reconcile.c): a completed run gets a signed RFC 6962
# checkpoint, an entry in the global log, and run.sealed; crashes at each
# step converge to the same sealed state.
load lib/common

setup() {
	common_setup
	agora_init
	P=$D/keys/signing.pub
}

submit() { # submit RUN: a run of two items, a -> b
	plan "p-$1.json" "$1" "$(item a true),$(item b true '["a"]')"
	agora-submit "p-$1.json" >/dev/null
}

# size RUN: the lines up to and including run.completed
size() {
	grep -n '"event":"run.completed"' "$D/runs/$1/status.jsonl" | cut -d: -f1
}

# sealed_ok RUN: the state every sealed run ends in, whatever crashed on the way
sealed_ok() {
	local n
	n=$(size "$1")
	[ ! -e "$D/active/$1" ] || { echo "$1 still active"; return 1; }
	assert_equal "$(grep -c '"event":"run.sealed"' "$D/runs/$1/status.jsonl")" 1
	# run.sealed follows run.completed, and nothing else does
	assert_equal "$(wc -l < "$D/runs/$1/status.jsonl")" $((n + 1))
	tail -n 1 "$D/runs/$1/status.jsonl" | grep -q '"event":"run.sealed"'
	# the checkpoint is exactly what signing those lines again gives (Ed25519 is deterministic)
	agora-helper checkpoint-sign "$D/keys/signing.key" "agora/run/$1" "$D/runs/$1/status.jsonl" "$n" > want.cp
	cmp want.cp "$D/runs/$1/checkpoint"
	agora-helper note-verify "$P" "$D/runs/$1/checkpoint" >/dev/null
	# one global entry for the run
	assert_equal "$(grep -c "^{\"run\":\"$1\"," "$D/audit/log.jsonl")" 1
}

# global_ok: the global checkpoint is the log's, and one exists for every size
global_ok() {
	local n i
	n=$(wc -l < "$D/audit/log.jsonl")
	cmp "$D/audit/checkpoint" "$D/audit/checkpoints/$n"
	agora-helper note-verify "$P" "$D/audit/checkpoint" >/dev/null
	run -0 agora-helper checkpoint-parse "$D/audit/checkpoint"
	assert_line --index 0 "origin agora/log"
	assert_line --index 1 "size $n"
	assert_line --index 2 "root $(agora-helper merkle-root "$D/audit/log.jsonl" | cut -d' ' -f2)"
	for i in $(seq 0 "$n"); do
		[ -f "$D/audit/checkpoints/$i" ] || { echo "no checkpoint $i"; return 1; }
	done
}

@test "a completed run is sealed: checkpoint, run.sealed after run.completed, out of active/" {
	submit r
	drive r
	sealed_ok r
	n=$(size r)
	run -0 tail -n 1 "$D/runs/r/status.jsonl"
	cp=$(sha256sum "$D/runs/r/checkpoint" | cut -d' ' -f1)
	root=$(agora-helper merkle-root "$D/runs/r/status.jsonl" "$n" | cut -d' ' -f2)
	name=$(agora-helper key-info "$P" | sed -n 's/^name //p')
	id=$(agora-helper key-info "$P" | sed -n 's/^id //p')
	assert_output --regexp "^\{\"seq\":$n,\"at\":\"[0-9T:.-]+Z\",\"run\":\"r\",\"event\":\"run.sealed\",\"size\":$n,\"root\":\"$root\",\"checkpoint\":\"$cp\",\"key\":\"$name\",\"keyId\":\"$id\",\"logIndex\":0,\"prev\":\"[0-9a-f]{64}\"\}\$"
}

@test "the checkpoint: origin agora/run/RUN, the size, the base64 root, one signature" {
	submit r
	drive r
	n=$(size r)
	root=$(agora-helper merkle-root "$D/runs/r/status.jsonl" "$n" | cut -d' ' -f2)
	name=$(agora-helper key-info "$P" | sed -n 's/^name //p')
	run -0 cat "$D/runs/r/checkpoint"
	assert_line --index 0 "agora/run/r"
	assert_line --index 1 "$n"
	assert_line --index 2 "$(echo "$root" | xxd -r -p | base64)"
	assert_line --index 3 --regexp "^— $name [A-Za-z0-9+/]{91}=\$"
	assert_equal "$(wc -l < "$D/runs/r/checkpoint")" 5
}

@test "interop: an independent Python RFC 6962 recomputes the sealed root" {
	submit r
	drive r
	n=$(size r)
	want=$(python3 -c '
import hashlib, sys
H = lambda b: hashlib.sha256(b).digest()
def mth(d):
    if not d: return H(b"")
    if len(d) == 1: return H(b"\x00" + d[0])
    k = 1
    while 2 * k < len(d): k *= 2
    return H(b"\x01" + mth(d[:k]) + mth(d[k:]))
d = open(sys.argv[1], "rb").read().split(b"\n")[:int(sys.argv[2])]
print(mth(d).hex())' "$D/runs/r/status.jsonl" "$n")
	run -0 agora-helper checkpoint-parse "$D/runs/r/checkpoint"
	assert_line --index 2 "root $want"
}

@test "the global log: one entry per sealed run, its checkpoints consistent" {
	submit r1
	drive r1
	submit r2
	drive r2
	sealed_ok r1
	sealed_ok r2
	global_ok
	run -0 cat "$D/audit/log.jsonl"
	assert_line --index 0 --regexp '^\{"run":"r1","size":[0-9]+,"root":"[0-9a-f]{64}","checkpoint":"[0-9a-f]{64}"\}$'
	assert_line --index 1 --regexp '^\{"run":"r2","size":[0-9]+,"root":"[0-9a-f]{64}","checkpoint":"[0-9a-f]{64}"\}$'
	assert_equal "${#lines[@]}" 2
	# each entry names its run's checkpoint by hash
	assert_line --index 0 --partial "\"checkpoint\":\"$(sha256sum "$D/runs/r1/checkpoint" | cut -d' ' -f1)\""
	# RFC 6962 consistency from checkpoints/1 to checkpoints/2
	r1=$(agora-helper checkpoint-parse "$D/audit/checkpoints/1" | sed -n 's/^root //p')
	r2=$(agora-helper checkpoint-parse "$D/audit/checkpoints/2" | sed -n 's/^root //p')
	proof=$(agora-helper merkle-consistency "$D/audit/log.jsonl" 1 2)
	run -0 agora-helper merkle-verify-consistency 1 2 "$r1" "$r2" $proof
	assert_output ok
}

check_crash() { # check_crash POINT: crash there once, then drive; the sealed state is whole
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
	sealed_ok r
	global_ok
	assert_equal "$(wc -l < "$D/audit/log.jsonl")" 1
	submit r2
	drive r2
	sealed_ok r2
	global_ok
}

@test "crash at seal-checkpoint (checkpoint written, global log not yet)" { check_crash seal-checkpoint; }
@test "crash at seal-log (global entry appended, global checkpoint not yet)" {
	check_crash seal-log
}
@test "crash at seal-global (global checkpoint written, run.sealed not yet)" { check_crash seal-global; }
@test "crash at seal-event (run.sealed logged, still active)" { check_crash seal-event; }
@test "crash at complete-log leaves a completed run that the next tick seals" { check_crash complete-log; }
@test "crash at complete-active (sealed, out of active/)" { check_crash complete-active; }

@test "a torn line in the global log is cut off by the next seal" {
	submit r1
	drive r1
	printf '{"run":"x","si' >> "$D/audit/log.jsonl"
	submit r2
	drive r2
	run ! grep -q '"x"' "$D/audit/log.jsonl"
	global_ok
	assert_equal "$(wc -l < "$D/audit/log.jsonl")" 2
}

@test "without a signing key the run stays completed and active, and is sealed once the key is back" {
	submit r
	mv "$D/keys/signing.key" key.saved
	wait_for 'agora-reconcile 2>/dev/null; grep -q "\"event\":\"run.completed\"" "$D/runs/r/status.jsonl"'
	run -0 --separate-stderr agora-reconcile
	assert_stderr "agora-reconcile: cannot seal run 'r': no signing key '$D/keys/signing.key'"
	[ -e "$D/active/r" ]
	[ ! -e "$D/runs/r/checkpoint" ]
	run ! grep -q '"event":"run.sealed"' "$D/runs/r/status.jsonl"
	mv key.saved "$D/keys/signing.key"
	run -0 agora-reconcile
	sealed_ok r
}

@test "a signing key readable by others is refused: the run is not sealed" {
	submit r
	chmod 0644 "$D/keys/signing.key"
	wait_for 'agora-reconcile 2>/dev/null; grep -q "\"event\":\"run.completed\"" "$D/runs/r/status.jsonl"'
	run -0 --separate-stderr agora-reconcile
	assert_stderr "agora-reconcile: cannot seal run 'r': '$D/keys/signing.key': mode 0644, want 0600"
	[ -e "$D/active/r" ]
	chmod 0600 "$D/keys/signing.key"
	agora-reconcile
	sealed_ok r
}

@test "agora-ctl refuses a sealed run: exit 100, run is sealed" {
	submit r
	drive r
	run -100 --separate-stderr agora-ctl r PAUSE
	assert_stderr "agora-ctl: run 'r' is sealed; it takes no more directives"
	[ ! -s "$D/runs/r/control" ]
}

@test "a directive appended by hand to a sealed run's control file is never applied" {
	submit r
	drive r
	cp "$D/runs/r/status.jsonl" before
	echo CANCEL >> "$D/runs/r/control"
	tick
	tick
	cmp before "$D/runs/r/status.jsonl"
	sealed_ok r
}

@test "the signing key is never written to the state tree's logs" {
	submit r
	drive r
	key=$(sed -n 2p "$D/keys/signing.key")
	run ! grep -rqF "$key" "$D/runs" "$D/audit"
}

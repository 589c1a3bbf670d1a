#!/usr/bin/env bats
# sandbox = bwrap: a subagent writes its worktree and outputs/ and nothing
# else, cannot see the state directory, has no network and a PID
# namespace of its own, and dies whole on timeout and CANCEL.
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
	A=$D/runs/r/items/a/1
}

teardown() {
	rm -f /etc/agora-probe "$HOME/.agora-probe.$$" "/tmp/agora-probe.$$"
	common_teardown
}

# need_bwrap: skip without bubblewrap, unless ./configure --with-bwrap
# promised it, as CI's does.
need_bwrap() {
	command -v bwrap >/dev/null && return 0
	if grep -q '^WITH_BWRAP = 1' "$AGORA_ROOT/config.mk" 2>/dev/null; then
		echo "./configure --with-bwrap ran, but there is no bwrap on PATH" >&2
		return 1
	fi
	skip "bwrap is not installed (./configure --with-bwrap installs it)"
}

# sagent NAME SCRIPT: a sandboxed subagent whose command is the script
# itself: the test's directory, under /tmp, is not in the sandbox.
sagent() {
	conf "subagent.$1.command" "$2"
	conf "subagent.$1.sandbox" bwrap
}

# ditem ID SUBAGENT [WORKER-INPUT] [DEPS] [EXTRA]: one dispatch item.
ditem() {
	printf '{"id":"%s","executor":"dispatch","inputs":{"subagent":"%s","workerInput":%s},"depends_on":%s,"resourceLocks":[]%s}' \
		"$1" "$2" "${3:-null}" "${4:-[]}" "${5:+,$5}"
}

# reason RUN ITEM: the reason of the item's last line that has one.
reason() {
	grep "\"item\":\"$2\"," "$D/runs/$1/status.jsonl" | grep '"reason":' | tail -n 1 |
		sed 's/.*"reason":"\(.*\)"}$/\1/; s/","[a-zA-Z]*":.*//'
}

# in_ns NS: some process on the host is in the PID namespace NS.
in_ns() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$1" ] && return 0
	done
	return 1
}

@test "sandbox: a subagent writes its worktree and outputs, reads its input, and the patch is captured" {
	need_bwrap
	sagent edit 'echo sandboxed >> alpha.ts; cp "$AGORA_INPUT" seen-input; echo report > "$AGORA_OUTPUTS_DIR/r.txt"'
	plan p.json r "$(ditem a edit '{"file":"alpha.ts"}')"
	agora-submit p.json
	drive r
	assert_equal "$(outcome r)" succeeded
	run -0 agora-show r a
	assert_output --partial "$(printf '%s\n' ' export const alpha = 1;' '+sandboxed')"
	git clone -q app check
	agora-show r a > patch
	git -C check apply --index ../patch
	assert_equal "$(tail -n 1 check/alpha.ts)" sandboxed
	assert_equal "$(cat check/seen-input)" "$(cat "$A/input.json")"
	run -0 agora-show --outputs r a
	assert_output --partial r.txt
	assert_equal "$(cat "$A/outputs/r.txt")" report
}

@test "sandbox: a subagent cannot write outside its worktree and outputs" {
	need_bwrap
	mkdir "$T/home"
	echo host > "$T/hostfile"
	probe=/tmp/agora-probe.$$
	sagent probe 'for f in /etc/agora-probe "'"$HOME/.agora-probe.$$"'" "'"$T/hostfile"'" "'"$probe"'" "$AGORA_OUTPUTS_DIR/../spec.json" "$AGORA_DIR/agora.conf" "$AGORA_DIR/keys/signing.key" "$AGORA_DIR/runs/r/status.jsonl"; do (echo pwned >> "$f") 2>> "$AGORA_OUTPUTS_DIR/errors"; done; cat "'"$T/hostfile"'" "'"$probe"'" > "$AGORA_OUTPUTS_DIR/private-tmp"'
	sums=$(sha256sum "$D/agora.conf" "$D/keys/signing.key")
	plan p.json r "$(ditem a probe)"
	agora-submit p.json
	drive r
	assert_equal "$(outcome r)" succeeded
	run -0 cat "$A/outputs/errors"
	assert_output "$(printf '/bin/sh: 1: cannot create %s\n' \
		"/etc/agora-probe: Read-only file system" \
		"$HOME/.agora-probe.$$: Read-only file system" \
		"$A/outputs/../spec.json: Read-only file system" \
		"$D/agora.conf: Read-only file system" \
		"$D/keys/signing.key: Directory nonexistent" \
		"$D/runs/r/status.jsonl: Read-only file system")"
	# its /tmp is its own: what it wrote there never reached the host's
	assert_equal "$(cat "$A/outputs/private-tmp")" "$(printf 'pwned\npwned')"
	[ ! -e "$probe" ]
	[ ! -e /etc/agora-probe ]
	[ ! -e "$HOME/.agora-probe.$$" ]
	assert_equal "$(cat "$T/hostfile")" host
	assert_equal "$(sha256sum "$D/agora.conf" "$D/keys/signing.key")" "$sums"
	run ! grep -qx pwned "$D/runs/r/status.jsonl" "$A/spec.json"
}

@test "sandbox: a subagent can neither read nor list the state directory" {
	need_bwrap
	conf subagent.plain.command true
	sagent look 'o=$AGORA_OUTPUTS_DIR; ls -A "$AGORA_DIR" > "$o/state"; ls -A "$AGORA_DIR/runs/r/items" > "$o/items"; ls -A "$o/.." > "$o/attempt"; for f in agora.conf keys/signing.key keys/signing.pub runs/r/status.jsonl runs/r/plan.json objects.git/HEAD runs/r/items/x/1/spec.json; do cat "$AGORA_DIR/$f" 2>> "$o/errors"; done; true'
	plan p.json r "$(ditem x plain),$(ditem a look null '["x"]')"
	agora-submit p.json
	drive r
	assert_equal "$(outcome r)" succeeded
	assert_equal "$(cat "$A/outputs/state")" runs
	assert_equal "$(cat "$A/outputs/items")" a
	assert_equal "$(cat "$A/outputs/attempt" | tr '\n' ' ')" "input.json inputs outputs worktree "
	run -0 cat "$A/outputs/errors"
	assert_output "$(printf 'cat: %s: No such file or directory\n' "$D/agora.conf" \
		"$D/keys/signing.key" "$D/keys/signing.pub" "$D/runs/r/status.jsonl" \
		"$D/runs/r/plan.json" "$D/objects.git/HEAD" "$D/runs/r/items/x/1/spec.json")"
}

@test "sandbox: a subagent has no network: loopback only, the host's ports unreachable" {
	need_bwrap
	python3 -c '
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
open(sys.argv[1] + ".new", "w").write(str(s.getsockname()[1]))
__import__("os").rename(sys.argv[1] + ".new", sys.argv[1])
s.settimeout(120)
try:
    s.accept()
    open(sys.argv[2], "w").write("connected")
except OSError:
    pass
' "$T/port" "$T/accepted" &
	listener=$!
	wait_for "[ -s '$T/port' ]"
	port=$(cat "$T/port")
	sagent net 'o=$AGORA_OUTPUTS_DIR; sed -n "s/^ *\([a-z0-9]*\):.*/\1/p" /proc/net/dev > "$o/ifaces"; for a in 127.0.0.1:'"$port"' 192.0.2.1:80; do python3 -c "import socket, sys; h, p = sys.argv[1].split(\":\"); socket.create_connection((h, int(p)), 5)" "$a" 2>&1 | tail -n 1 >> "$o/net"; done'
	plan p.json r "$(ditem a net)"
	agora-submit p.json
	drive r
	assert_equal "$(outcome r)" succeeded
	assert_equal "$(cat "$A/outputs/ifaces")" lo
	run -0 cat "$A/outputs/net"
	assert_output "$(printf '%s\n' 'ConnectionRefusedError: [Errno 111] Connection refused' \
		'OSError: [Errno 101] Network is unreachable')"
	[ ! -e "$T/accepted" ]
	kill "$listener"
	wait "$listener" || :
}

@test "sandbox: a subagent has a PID namespace of its own" {
	need_bwrap
	sagent ps 'echo $$ > "$AGORA_OUTPUTS_DIR/pid"; for p in /proc/[0-9]*; do read -r c < "$p/comm"; echo "${p#/proc/} $c"; done > "$AGORA_OUTPUTS_DIR/procs"'
	plan p.json r "$(ditem a ps)"
	agora-submit p.json
	drive r
	assert_equal "$(outcome r)" succeeded
	assert_equal "$(cat "$A/outputs/pid")" 2
	assert_equal "$(cat "$A/outputs/procs")" "$(printf '1 bwrap\n2 sh')"
}

# The worker leaves behind a grandchild in its process group, one in a
# session of its own, and one that ignores TERM; all must die.
TREE='o=$AGORA_OUTPUTS_DIR; readlink /proc/self/ns/pid > "$o/ns.new"; sleep 1000 & setsid sleep 1000 & (trap "" TERM; sleep 1000) & mv "$o/ns.new" "$o/ns"; wait'

@test "sandbox: a timeout kills the whole sandboxed tree" {
	need_bwrap
	sagent slow "$TREE"
	conf subagent.slow.timeout 2
	plan p.json r "$(ditem a slow)"
	agora-submit p.json
	drive r
	assert_equal "$(outcome r)" failed
	assert_equal "$(reason r a)" "timeout after 2s"
	ns=$(cat "$A/outputs/ns")
	[[ $ns == pid:* ]]
	wait_for "! in_ns '$ns'"
}

@test "sandbox: CANCEL kills the whole sandboxed tree" {
	need_bwrap
	sagent slow "$TREE"
	plan p.json r "$(ditem a slow)"
	agora-submit p.json
	tick
	wait_for "[ -s '$A/outputs/ns' ]"
	ns=$(cat "$A/outputs/ns")
	in_ns "$ns"
	agora-ctl r CANCEL
	drive r
	assert_equal "$(outcome r)" cancelled
	assert_equal "$(item_status r a)" cancelled
	wait_for "! in_ns '$ns'"
}

@test "sandbox: without bwrap on PATH the item fails for good, saying what is missing" {
	sagent edit 'echo never > ran'
	conf agora.maxAttempts 3
	plan p.json r "$(ditem a edit)"
	agora-submit p.json
	mkdir "$T/nobin"
	deadline=$((SECONDS + 60))
	until grep -q '"event":"run.completed"' "$D/runs/r/status.jsonl" 2>/dev/null; do
		PATH="$T/nobin" "$AGORA_ROOT/bin/agora-reconcile" -d "$D"
		[ "$SECONDS" -lt "$deadline" ]
		sleep 0.02
	done
	assert_equal "$(outcome r)" failed
	assert_equal "$(reason r a)" "sandbox 'bwrap': no program 'bwrap' on PATH '$T/nobin' (install Debian's bubblewrap: apt-get install bubblewrap)"
	assert_equal "$(grep -c '"event":"item.running"' "$D/runs/r/status.jsonl")" 1
	[ ! -e "$A/worktree/ran" ]
}

# fakewrap NAME BODY: a program named bwrap in $T/NAME/ that records its
# arguments and runs BODY in place of the sandbox
fakewrap() {
	mkdir -p "$T/$1"
	printf '#!/bin/sh\nprintf "%%s\\n" "$*" > "%s/%s.args"\n%s\n' "$T" "$1" "$2" > "$T/$1/bwrap"
	chmod +x "$T/$1/bwrap"
}

# drive_path DIR RUN: drive RUN with DIR first on the PATH the workers get
drive_path() {
	local deadline=$((SECONDS + 60))
	until grep -q '"event":"run.completed"' "$D/runs/$2/status.jsonl" 2>/dev/null; do
		PATH="$1:$PATH" agora-reconcile -d "$D" >/dev/null
		[ "$SECONDS" -lt "$deadline" ]
		sleep 0.02
	done
}

@test "sandbox: bwrap that cannot make the sandbox fails the attempt with bwrap's own words" {
	# as bwrap does when the kernel refuses it namespaces: a message, exit 1,
	# and no "exit-code" on its status descriptor, for no subagent ran
	fakewrap nons 'echo "bwrap: Creating new namespace failed: Operation not permitted" >&2; exit 1'
	sagent edit 'echo never > ran'
	conf agora.maxAttempts 2
	plan p.json r "$(ditem a edit)"
	agora-submit p.json
	drive_path "$T/nons" r
	assert_equal "$(outcome r)" failed
	assert_equal "$(reason r a)" "sandbox 'bwrap' could not start the subagent: bwrap: Creating new namespace failed: Operation not permitted"
	# counted as a failed attempt, as any other: maxAttempts says how often
	assert_equal "$(grep -c '"event":"item.running"' "$D/runs/r/status.jsonl")" 2
	run -0 grep '"event":"item.failed"' "$D/runs/r/status.jsonl"
	assert_output --partial '"exit":1,"reason":"sandbox '"'"'bwrap'"'"' could not start'
	# bwrap was told where its status goes, and that descriptor was open
	run -0 cat "$T/nons.args"
	assert_output --regexp '^--die-with-parent --json-status-fd 3 --unshare-pid '
	[ ! -e "$A/worktree/ran" ]
}

@test "sandbox: a subagent that exits 1 itself keeps the plain failure, without a sandbox reason" {
	# bwrap reports the subagent's exit code on its status descriptor
	fakewrap ran 'printf "{ \"child-pid\": 2 }\n" >&3 && printf "{ \"exit-code\": 1 }\n" >&3 || exit 9; echo "the subagent failed" >&2; exit 1'
	sagent edit 'true'
	plan p.json r "$(ditem a edit)"
	agora-submit p.json
	drive_path "$T/ran" r
	assert_equal "$(outcome r)" failed
	run -0 grep '"event":"item.failed"' "$D/runs/r/status.jsonl"
	assert_output --partial '"exit":1,"reason":"exit 1",'
	assert_equal "$(cat "$A/stderr")" "the subagent failed"
}

@test "sandbox: a secret in serve's environment reaches neither the worker nor a status line or log" {
	need_bwrap
	sagent look 'env; env > "$AGORA_OUTPUTS_DIR/env"; echo "$SECRET" >&2'
	conf subagent.look.passEnv API_KEY
	plan p.json r "$(ditem a look)"
	API_KEY=k1 SECRET=s3cr3t-value agora-serve -i 60s 2>"$T/serve.err" &
	SERVE=$!
	agora-submit p.json
	run -0 agora-watch -t 60 r
	kill "$SERVE"
	wait "$SERVE"
	run -0 grep -c '^API_KEY=k1$' "$A/stdout" "$A/outputs/env"
	assert_output "$(printf '%s:1\n' "$A/stdout" "$A/outputs/env")"
	run ! grep -rq s3cr3t "$D" "$T/serve.err"
	run ! grep -q '^SECRET=' "$A/outputs/env"
}

@test "sandbox: network = host keeps the host's network, and the rest of the sandbox" {
	need_bwrap
	python3 -c '
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
open(sys.argv[1] + ".new", "w").write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".new", sys.argv[1])
c, _ = s.accept()
c.sendall(b"hello from the host\n")
c.close()
' "$T/port" &
	listener=$!
	wait_for "[ -s '$T/port' ]"
	sagent net 'o=$AGORA_OUTPUTS_DIR; python3 -c "import socket; print(socket.create_connection((\"127.0.0.1\", '"$(cat "$T/port")"'), 5).makefile().readline(), end=\"\")" > "$o/got"; echo $$ > "$o/pid"; ls -A "$AGORA_DIR" > "$o/state"'
	conf subagent.net.network host
	plan p.json r "$(ditem a net)"
	agora-submit p.json
	drive r
	assert_equal "$(outcome r)" succeeded
	assert_equal "$(cat "$A/outputs/got")" "hello from the host"
	assert_equal "$(cat "$A/outputs/pid")" 2
	assert_equal "$(cat "$A/outputs/state")" runs
	wait "$listener"
}

@test "sandbox: network takes none or host" {
	conf subagent.x.command true
	conf subagent.x.network wide
	plan p.json r "$(ditem a x)"
	run -100 --separate-stderr agora-submit p.json
	assert_stderr "agora-submit: $D/agora.conf: bad value 'wide' for 'subagent.x.network': expected 'none' or 'host'"
}

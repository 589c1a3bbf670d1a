# Shared set-up for every test: a reset environment and a fresh state tree.
bats_require_minimum_version 1.5.0
load /usr/lib/bats/bats-support/load
load /usr/lib/bats/bats-assert/load

AGORA_ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
FIXTURES=$AGORA_ROOT/t/fixtures

common_setup() {
	for v in $(env | sed -n 's/^\(AGORA_[A-Za-z0-9_]*\)=.*/\1/p'); do
		unset "$v"
	done
	export LC_ALL=C TZ=UTC
	export PATH="$AGORA_ROOT/bin:$PATH"
	export ASAN_OPTIONS=detect_leaks=0
	export D="$BATS_TEST_TMPDIR/state"
	export AGORA_DIR="$D"
	cd "$BATS_TEST_TMPDIR" || return 1
}

common_teardown() {
	# stop whatever a test left running under its directory; test/1 must
	# not match test/11, which may be running in the other test file.
	# Again while there was something to kill: a serve killed in the
	# middle of a tick may have started a supervisor after the first pass.
	local i
	for i in 1 2 3 4 5; do
		pkill -KILL -f "$BATS_TEST_TMPDIR(/| |\$)" 2>/dev/null || break
	done
}

setup() { common_setup; }
teardown() { common_teardown; }

# agora_init [KEY VALUE]...: a state tree with quick timings for tests.
agora_init() {
	agora-init "$D" >/dev/null || return 1
	conf agora.backoff 100ms
	conf agora.killGrace 500ms
	while [ $# -ge 2 ]; do
		conf "$1" "$2"
		shift 2
	done
}

# conf KEY VALUE: set a key in agora.conf.
conf() {
	git config -f "$D/agora.conf" "$1" "$2"
}

# wait_for 'shell condition' [seconds]: poll with a deadline, never a bare sleep.
wait_for() {
	local deadline=$((SECONDS + ${2:-60}))
	until eval "$1"; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "timed out waiting for: $1" >&2
			return 1
		fi
		sleep 0.02
	done
}

# drive RUN [seconds]: tick until RUN has completed.
drive() {
	local deadline=$((SECONDS + ${2:-60}))
	while [ -e "$D/active/$1" ] || ! grep -q '"event":"run.completed"' "$D/runs/$1/status.jsonl" 2>/dev/null; do
		agora-reconcile -d "$D" >/dev/null 2>>"$BATS_TEST_TMPDIR/reconcile.err" || true
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "run $1 did not complete" >&2
			return 1
		fi
		sleep 0.02
	done
}

# outcome RUN: the status of the run.completed line.
outcome() {
	sed -n 's/.*"event":"run.completed","status":"\([a-z]*\)".*/\1/p' "$D/runs/$1/status.jsonl"
}

# item_status RUN ITEM: the last status logged for an item.
item_status() {
	grep "\"item\":\"$2\"," "$D/runs/$1/status.jsonl" | grep '"status":' | tail -n 1 |
		sed 's/.*"status":"\([a-z]*\)".*/\1/'
}

# events RUN: the event names, one per line.
events() {
	sed 's/.*"event":"\([a-z.]*\)".*/\1/' "$D/runs/$1/status.jsonl"
}

# plan FILE ID ITEMS-JSON: write an agora plan.
plan() {
	printf '{"id":"%s","items":[%s]}\n' "$2" "$3" > "$1"
}

# item ID SH [DEPS-JSON] [LOCKS-JSON] [EXTRA]: one exec item.
item() {
	printf '{"id":"%s","executor":"exec","inputs":{"sh":"%s"},"depends_on":%s,"resourceLocks":%s%s}' \
		"$1" "$2" "${3:-[]}" "${4:-[]}" "${5:+,$5}"
}

# attempt_pids RUN ITEM N: wait until the attempt's worker runs; set sup and worker.
attempt_pids() {
	local f="$D/runs/$1/items/$2/$3/lease"
	wait_for "[ -s '$f' ] && ! grep -q ' 0\$' '$f'" || return 1
	read -r sup worker < "$f"
}

# hang_first ITEM: run r, whose ITEM sleeps in its first attempt and passes
# in the next (each attempt's number goes to tries); one tick starts it,
# and sup and worker name its supervisor and worker.
hang_first() {
	plan p.json r "$(item "$1" "echo \$AGORA_ATTEMPT >> $BATS_TEST_TMPDIR/tries; [ \$AGORA_ATTEMPT -gt 1 ] || sleep 1000")"
	agora-submit p.json
	agora-reconcile
	attempt_pids r "$1" 1
}

# tick: one reconcile, which must succeed.
tick() {
	agora-reconcile -d "$D" >/dev/null
}

# hold ID [DEPS] [LOCKS] [EXTRA]: an item that starts, then waits for ID.release.
hold() {
	local t=$BATS_TEST_TMPDIR
	item "$1" "touch $t/$1.started; until [ -e $t/$1.release ]; do sleep 0.05; done" "${2:-[]}" "${3:-[]}" "$4"
}

# fixture NAME: copy t/fixtures/plans/NAME here, so messages name it short.
fixture() {
	cp "$FIXTURES/plans/$1" "$1"
}

# assert_stderr TEXT: what the last run --separate-stderr wrote to stderr.
assert_stderr() {
	assert_equal "$stderr" "$1"
}

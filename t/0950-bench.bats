#!/usr/bin/env bats
# bench/ measures and is never timed here: these tests check that the
# harness and its floor still run and count what they claim to count.
load lib/common

@test "bench/floor runs the DAG in dependency order and writes agora's layout with -l" {
	run -0 python3 "$AGORA_ROOT/bench/gen" -n 30 --seed 7 dag
	run -0 cc -std=c11 -D_GNU_SOURCE -O2 -o floor "$AGORA_ROOT/bench/floor.c"
	mkdir dag/out
	# a touch that also says what it found: each dependency's output exists
	mkdir shim
	cat > shim/touch <<-'EOF'
	#!/bin/sh
	i=${1#out/t}
	for d in $(sed -n "s/^$i://p" dag.txt); do
		[ -e "out/t$d" ] || { echo "t$i before t$d" >> ../order.err; exit 1; }
	done
	exec /usr/bin/touch "$@"
	EOF
	chmod +x shim/touch
	PATH="$PWD/shim:$PATH" run -0 ./floor -j 2 dag
	assert_output ""
	[ ! -e order.err ]
	assert_equal "$(ls dag/out | wc -l)" 30
	[ ! -e st ]
	rm -r dag/out && mkdir dag/out
	run -0 ./floor -j 2 -l st dag
	assert_equal "$(ls dag/out | wc -l)" 30
	assert_equal "$(ls st/runs/r/items | wc -l)" 30
	run -0 ls -A st/runs/r/items/t29/1
	assert_output "$(printf '%s\n' input.json lease outputs result.json spec.json stderr stdout)"
	# item.ready, item.running and item.done of every item
	assert_equal "$(wc -l < st/runs/r/status.jsonl)" 90
	assert_equal "$(stat -c %s st/runs/r/items/t29/1/spec.json)" 285
	# -m: the least layout, one directory an attempt
	rm -r dag/out && mkdir dag/out
	run -0 ./floor -j 2 -l min -m dag
	assert_equal "$(ls dag/out | wc -l)" 30
	run -0 ls -A min/runs/r/items/t29
	assert_output "$(printf '%s\n' lease result.json stderr stdout)"
	assert_equal "$(wc -l < min/runs/r/status.jsonl)" 90
}

@test "bench/floor refuses a DAG that is not bench/gen's, and bad usage" {
	run -0 cc -std=c11 -D_GNU_SOURCE -O2 -o floor "$AGORA_ROOT/bench/floor.c"
	mkdir dag
	printf '0:\n1: 0\n2: 5\n' > dag/dag.txt
	run -100 ./floor dag
	assert_output "floor: dag/dag.txt:3: dependency 5 is not an earlier item"
	printf '0:\nx\n' > dag/dag.txt
	run -100 ./floor dag
	assert_output 'floor: dag/dag.txt:2: not "I: D1 D2"'
	run -100 ./floor
	assert_output "usage: floor [-l STATE [-m]] [-j J] DAG"
	run -100 ./floor -j 0 dag
	assert_output "usage: floor [-l STATE [-m]] [-j J] DAG"
	run -100 ./floor -m dag
	assert_output "usage: floor [-l STATE [-m]] [-j J] DAG"
}

@test "the bench's dag phase runs make, agora and the floors and prints their ratios" {
	BENCH_N=30 BENCH_ROUNDS=1 BENCH_PHASES=dag BENCH_SH=0 BENCH_TOOLS="make agora floor" \
	    BENCH_DIR="$PWD/bo" run -0 --separate-stderr sh "$AGORA_ROOT/bench/run"
	assert_line --regexp '^   make -j2 +[0-9.]+ s +[0-9.]+ s +[0-9.]+ s  1 ok, 0 failed$'
	assert_line --regexp '^   agora argv +[0-9.]+ s .* 1 ok, 0 failed$'
	assert_line --regexp '^   floor +[0-9.]+ s .* 1 ok, 0 failed$'
	assert_line --regexp '^   floor layout +[0-9.]+ s .* 1 ok, 0 failed$'
	assert_line --regexp '^   floor minimal +[0-9.]+ s .* 1 ok, 0 failed$'
	assert_line --regexp '^   floor minimal / make +[0-9]+\.[0-9]{2}$'
	assert_line --regexp '^   floor layout / make +[0-9]+\.[0-9]{2}$'
	assert_line --regexp '^   agora argv / floor layout +[0-9]+\.[0-9]{2}$'
	refute_line --partial FAILED
	[ ! -e bo/trash ]
}

#!/usr/bin/env bats
# The scheduler is a pure function of the state, so its invariants can be
# checked on many random states: caps, slots, one holder per lock key,
# fire order, nothing fired while paused or backing off, a reason for
# every item left waiting. t/helper/agora-helper.c holds the checks.
load lib/common

@test "the scheduler's invariants hold on 20 000 random states (seed 1)" {
	run -0 agora-helper sched-props 20000 1
	assert_output "ok 20000"
}

@test "the scheduler's invariants hold on 20 000 random states (seed 20261122)" {
	run -0 agora-helper sched-props 20000 20261122
	assert_output "ok 20000"
}

@test "the incremental advance decides exactly what a pass over the whole run does (20 000 random DAGs)" {
	# serve keeps runs between ticks and looks only at the dependents of
	# what changed; a tick of cron's loads the run and looks at every item
	run -0 agora-helper advance-diff 20000 1
	assert_output "ok 20000"
	run -0 agora-helper advance-diff 20000 20261130
	assert_output "ok 20000"
}

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

#!/usr/bin/env bats
load lib/common

@test "agora-init creates the layout of DESIGN.md" {
	run -0 agora-init "$D"
	assert_output "initialized agora state directory '$D'"
	for d in inbox/tmp inbox/new inbox/cur inbox/rejected runs active locks audit keys objects.git; do
		[ -d "$D/$d" ]
	done
	[ -f "$D/agora.conf" ] && [ -f "$D/control" ] && [ -f "$D/tick.lock" ] && [ -p "$D/wake" ]
	[ -f "$D/objects.git/HEAD" ]
}

@test "agora-init makes an Ed25519 key pair, the secret 0600" {
	run -0 agora-init "$D"
	run -0 stat -c %a "$D/keys/signing.key"
	assert_output 600
	run -0 openssl pkey -in "$D/keys/signing.key" -noout -text
	assert_output --partial "ED25519 Private-Key"
	run -0 openssl pkey -pubin -in "$D/keys/signing.pub" -noout -text
	assert_output --partial "ED25519 Public-Key"
}

@test "agora-init refuses a directory that already holds a state tree" {
	agora-init "$D" >/dev/null
	run -100 agora-init "$D"
	assert_output "agora-init: '$D' already holds a state tree (agora.conf exists)"
}

@test "agora-init honours -d and AGORA_DIR" {
	run -0 agora-init -d "$BATS_TEST_TMPDIR/x"
	[ -f "$BATS_TEST_TMPDIR/x/agora.conf" ]
	AGORA_DIR="$BATS_TEST_TMPDIR/y" run -0 agora-init
	[ -f "$BATS_TEST_TMPDIR/y/agora.conf" ]
}

@test "agora.conf documents every key it sets" {
	agora-init "$D" >/dev/null
	for k in concurrency maxAttempts backoff backoffMax leaseTtl leaseGrace killGrace passEnv defaultQueue porkiExecutor capacity wait kind command repo base timeout slots sandbox network path remote ref; do
		grep -q "# .*$k\|#$k\|^	$k\|#	$k" "$D/agora.conf" || { echo "undocumented: $k"; false; }
	done
}

@test "every program answers -h with its usage line and exit 0" {
	for p in agora-init agora-validate agora-submit agora-reconcile agora-serve agora-watch agora-status agora-ctl; do
		run -0 "$p" -h
		assert_line --index 0 --partial "usage: $p"
	done
}

@test "a bad option is a usage error, exit 100" {
	run -100 agora-reconcile -Z
	assert_line --partial "usage: agora-reconcile [-nv] [-d dir]"
}

@test "a program run outside a state tree says so, exit 100" {
	run -100 agora-reconcile -d "$BATS_TEST_TMPDIR/nothing"
	assert_output "agora-reconcile: '$BATS_TEST_TMPDIR/nothing' is not a state directory (no agora.conf); create one with agora-init"
}

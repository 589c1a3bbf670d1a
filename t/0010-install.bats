#!/usr/bin/env bats
load lib/common

@test "make install honours PREFIX and DESTDIR, man pages included" {
	run -0 make -C "$AGORA_ROOT" -s install DESTDIR="$BATS_TEST_TMPDIR/root" PREFIX=/opt/agora
	R=$BATS_TEST_TMPDIR/root/opt/agora
	for p in agora agora-init agora-validate agora-submit agora-reconcile agora-serve agora-watch agora-status agora-ctl; do
		[ -x "$R/bin/$p" ] || { echo "missing bin/$p"; false; }
		[ -f "$R/share/man/man1/$p.1" ] || { echo "missing man1/$p.1"; false; }
	done
	[ -x "$R/libexec/agora/agora-exec" ] && [ -x "$R/libexec/agora/agora-tick" ]
	[ ! -e "$R/bin/agora-exec" ] && [ ! -e "$R/bin/agora-tick" ]
	[ -f "$R/share/man/man5/agora-plan.5" ] && [ -f "$R/share/man/man5/agora-state.5" ]
	[ -f "$R/share/man/man7/agora.7" ]
}

@test "installed programs find agora-tick and agora-exec in their libexec directory" {
	make -C "$AGORA_ROOT" -s install DESTDIR="$BATS_TEST_TMPDIR/root" PREFIX=/opt/agora
	R=$BATS_TEST_TMPDIR/root/opt/agora
	agora_init
	plan p.json r "$(item a true)"
	agora-submit p.json
	# built for /usr/local, installed under /opt/agora: found as bin/../libexec/agora
	PATH=$R/bin:/usr/bin:/bin drive r
	assert_equal "$(outcome r)" succeeded
}

@test "agora VERB runs agora-VERB" {
	run -0 agora --version
	assert_output "agora 0.1.0"
	run -100 agora nonsense
	assert_output "agora: 'nonsense' is not an agora command"
	agora_init
	run -0 agora status
	assert_line --index 0 --partial RUN
}

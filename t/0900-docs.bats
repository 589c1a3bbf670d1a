#!/usr/bin/env bats
# The man pages agree with the programs: each SYNOPSIS reads like the
# program's usage line, mandoc finds nothing wrong, the events, crash points
# and agora.conf keys of the code are documented, and every EXAMPLE runs.
#
# How EXAMPLES are marked up, so that this file can run them:
#   .Dl COMMAND          a shell command, run with sh -c; it must exit 0
#   .\" exit N           the next .Dl must exit N instead
#   .Dl COMMAND &        started in the background; at the end of the page
#                        it gets SIGTERM and must then exit 0
#   .\" file NAME        the next .Bd -literal block is written to NAME
#   .\" stdout           the next .Bd -literal block is the exact standard
#   .\" stderr           output (or error) of the .Dl before it
# Any other literal block in EXAMPLES is an error. Each page's examples run
# in order, in a fresh state tree that is both the current directory and
# $AGORA_DIR, which also holds the files of agora-plan(5)'s examples.
load lib/common

DOC=$AGORA_ROOT/doc
PROGRAMS="agora agora-init agora-validate agora-submit agora-reconcile agora-serve agora-watch agora-status agora-ctl agora-show agora-apply agora-audit agora-verify agora-replicate"
PAGES="agora.1 agora-init.1 agora-validate.1 agora-submit.1 agora-reconcile.1 agora-serve.1 agora-watch.1 agora-status.1 agora-ctl.1 agora-show.1 agora-apply.1 agora-audit.1 agora-verify.1 agora-replicate.1 agora-plan.5 agora-state.5 agora-bundle.5 agora.7"

setup() {
	common_setup
	command -v mandoc >/dev/null || fail "mandoc is not installed (Debian: apt-get install mandoc)"
}

teardown() {
	local pid
	if [ -f "$BATS_TEST_TMPDIR/bg.pids" ]; then
		while read -r pid; do
			kill -KILL "$pid" 2>/dev/null || true
		done < "$BATS_TEST_TMPDIR/bg.pids"
	fi
	common_teardown
}

# render PAGE: the page as text, one line per SYNOPSIS entry, no overstrike.
render() {
	mandoc -Tascii -O width=1000 "$DOC/$1" > "$BATS_TEST_TMPDIR/render.raw" || return 1
	sed 's/.\x08//g' "$BATS_TEST_TMPDIR/render.raw"
}

# section NAME: the body of one section of rendered text on stdin, unindented.
section() {
	awk -v want="$1" '
		/^[A-Z]/ { on = ($0 == want); next }
		on && NF { sub(/^ +/, ""); print }
	'
}

# usage_lines PROGRAM: what -h prints, without "usage: " and the indentation.
usage_lines() {
	run -0 "$1" -h
	printf '%s\n' "$output" | awk 'NR == 1 { sub(/^usage: /, ""); print; next }
		/^ / { sub(/^ +/, ""); print; next }
		{ exit }'
}

# check_synopsis PAGE PROGRAM: the page's SYNOPSIS is the program's usage.
check_synopsis() {
	local want got
	want=$(usage_lines "$2")
	got=$(render "$1" | section SYNOPSIS | tr -s ' ')
	[ -n "$want" ] || fail "$2 -h printed no usage"
	assert_equal "$got" "$want"
}

# unescape LINE: the roff escapes that examples may use, as the reader sees them.
unescape() {
	local s=$1 rest
	s=${s//'\(dq'/'"'}
	s=${s//'\(aq'/"'"}
	s=${s//'\(ga'/'`'}
	s=${s//'\-'/-}
	s=${s//'\&'/}
	rest=${s//'\e'/}
	case $rest in
	*'\'*) echo "unsupported roff escape in example: $1" >&2; return 1 ;;
	esac
	printf '%s\n' "${s//'\e'/\\}"
}

# examples PAGE [files]: run the EXAMPLES of a page in order, in the current
# directory; with "files", only write its files.
examples() {
	local page=$DOC/$1 only=$2 line in=0 want=0 pending= block= name= body= last= n=0 cmd rc
	while IFS= read -r -u 4 line; do
		case $line in
		'.Sh EXAMPLES') in=1; continue ;;
		'.Sh '*) in=0; continue ;;
		esac
		[ "$in" = 1 ] || continue
		if [ -n "$block" ]; then
			if [ "$line" != .Ed ]; then
				body+=$(unescape "$line")$'\n' || return 1
				continue
			fi
			case $block in
			file) printf '%s' "$body" > "$name" ;;
			stdout|stderr)
				[ -n "$only" ] && { block=; continue; }
				[ -n "$last" ] || fail "$1: a $block block follows no command"
				if [ "$block" = stdout ]; then
					assert_equal "$output" "${body%$'\n'}"
				else
					assert_equal "$stderr" "${body%$'\n'}"
				fi
				;;
			esac
			block=
			continue
		fi
		case $line in
		'.\" exit '*) want=${line#'.\" exit '} ;;
		'.\" file '*) pending=file name=${line#'.\" file '} ;;
		'.\" stdout') pending=stdout ;;
		'.\" stderr') pending=stderr ;;
		'.Bd -literal'*)
			[ -n "$pending" ] || fail "$1: a literal block in EXAMPLES is neither a file nor an output"
			block=$pending pending= body= ;;
		'.Bd '*) fail "$1: EXAMPLES takes only .Bd -literal blocks" ;;
		'.Dl '*)
			cmd=$(unescape "${line#.Dl }") || return 1
			[ -n "$only" ] && { want=0; continue; }
			echo "example of $1: $cmd"
			if [ "${cmd% &}" != "$cmd" ]; then
				n=$((n + 1))
				sh -c "exec ${cmd% &}" > "$BATS_TEST_TMPDIR/bg.$n.out" 2>&1 3>&- < /dev/null &
				echo "$!" >> "$BATS_TEST_TMPDIR/bg.pids"
				last=
			else
				run -"$want" --separate-stderr sh -c "$cmd" < /dev/null
				last=$cmd
			fi
			want=0
			;;
		esac
	done 4< "$page"
	[ -z "$block" ] || fail "$1: a literal block in EXAMPLES has no .Ed"
	[ -n "$only" ] && return 0
	# the background examples: each stops cleanly on SIGTERM
	if [ -f "$BATS_TEST_TMPDIR/bg.pids" ]; then
		while read -r pid; do
			kill -TERM "$pid"
			rc=0
			wait "$pid" || rc=$?
			[ "$rc" = 0 ] || fail "$1: a background example exited $rc: $(cat "$BATS_TEST_TMPDIR"/bg.*.out)"
		done < "$BATS_TEST_TMPDIR/bg.pids"
		rm -f "$BATS_TEST_TMPDIR/bg.pids"
	fi
}

# run_examples PAGE: the page's examples in a fresh state tree.
run_examples() {
	local ex=$BATS_TEST_TMPDIR/deploy
	agora-init "$ex" > /dev/null
	export AGORA_DIR=$ex
	cd "$ex"
	[ "$1" = agora-plan.5 ] || examples agora-plan.5 files
	examples "$1"
}

@test "every program has a man page, and every page is in the Makefile" {
	for p in $PROGRAMS; do
		[ -f "$DOC/$p.1" ] || fail "no man page doc/$p.1"
	done
	for f in $PAGES; do
		[ -f "$DOC/$f" ] || fail "no man page doc/$f"
	done
	run -0 make -s -C "$AGORA_ROOT" -n install
	for f in $PAGES; do
		assert_output --partial "doc/$f"
	done
}

@test "mandoc -Tlint finds nothing wrong in any page" {
	local pages=() f line bad=
	for f in $PAGES; do
		pages+=("$DOC/$f")
	done
	run --separate-stderr mandoc -Tlint "${pages[@]}"
	[ "$status" -le 1 ] || fail "mandoc -Tlint exited $status: $output"
	# cross-references depend on the pages installed on this machine
	while IFS= read -r line; do
		case $line in
		*'STYLE: referenced manual not found: Xr '*) ;;
		'') ;;
		*) bad+="$line"$'\n' ;;
		esac
	done <<< "$output"
	[ -z "$bad" ] || fail "mandoc -Tlint: $bad"
}

@test "every page has NAME, SYNOPSIS, DESCRIPTION, EXIT STATUS, EXAMPLES and SEE ALSO" {
	local f s
	for f in $PAGES; do
		for s in NAME SYNOPSIS DESCRIPTION 'EXIT STATUS' EXAMPLES 'SEE ALSO'; do
			grep -qx ".Sh $s" "$DOC/$f" || fail "$f has no $s section"
		done
	done
}

@test "agora.1 SYNOPSIS reads like agora -h" {
	check_synopsis agora.1 agora
}

@test "agora-init.1 SYNOPSIS reads like agora-init -h" {
	check_synopsis agora-init.1 agora-init
}

@test "agora-validate.1 SYNOPSIS reads like agora-validate -h" {
	check_synopsis agora-validate.1 agora-validate
}

@test "agora-submit.1 SYNOPSIS reads like agora-submit -h" {
	check_synopsis agora-submit.1 agora-submit
}

@test "agora-reconcile.1 SYNOPSIS reads like agora-reconcile -h" {
	check_synopsis agora-reconcile.1 agora-reconcile
}

@test "agora-serve.1 SYNOPSIS reads like agora-serve -h" {
	check_synopsis agora-serve.1 agora-serve
}

@test "agora-watch.1 SYNOPSIS reads like agora-watch -h" {
	check_synopsis agora-watch.1 agora-watch
}

@test "agora-status.1 SYNOPSIS reads like agora-status -h" {
	check_synopsis agora-status.1 agora-status
}

@test "agora-ctl.1 SYNOPSIS reads like agora-ctl -h" {
	check_synopsis agora-ctl.1 agora-ctl
}

@test "agora-show.1 SYNOPSIS reads like agora-show -h" {
	check_synopsis agora-show.1 agora-show
}

@test "agora-apply.1 SYNOPSIS reads like agora-apply -h" {
	check_synopsis agora-apply.1 agora-apply
}

@test "agora-audit.1 SYNOPSIS reads like agora-audit -h" {
	check_synopsis agora-audit.1 agora-audit
}

@test "agora-verify.1 SYNOPSIS reads like agora-verify -h" {
	check_synopsis agora-verify.1 agora-verify
}

@test "agora-replicate.1 SYNOPSIS reads like agora-replicate -h" {
	check_synopsis agora-replicate.1 agora-replicate
}

@test "agora.7 SYNOPSIS holds the usage of every program, agora-exec too" {
	local p line synopsis
	synopsis=$(render agora.7 | section SYNOPSIS | tr -s ' ')
	for p in $PROGRAMS agora-exec; do
		while IFS= read -r line; do
			printf '%s\n' "$synopsis" | grep -qxF -- "$line" || fail "agora.7 SYNOPSIS lacks: $line"
		done <<< "$(usage_lines "$p")"
	done
}

@test "every option in a usage line is described in the page's OPTIONS" {
	local p o opts options
	for p in $PROGRAMS; do
		# -nv is -n and -v; --json is itself
		opts=$(usage_lines "$p" | grep -oE -- '(^|[[ ])--?[a-z]+' | tr -d '[ ' |
			sed -E '/^--/!s/^-(.*)/\1/;/^--/!s/(.)/-\1\n/g' | sed '/^$/d' | sort -u)
		options=$(render "$p.1" | section OPTIONS)
		for o in $opts; do
			printf '%s\n' "$options" | grep -qE -- "^$o([ ,]|\$)" ||
				fail "$p.1: OPTIONS does not describe $o"
		done
	done
}

@test "agora-state.5 names every event that reconcile logs" {
	local e
	for e in $(grep -oh '"\(run\|item\|control\)\.[a-z]*"' "$AGORA_ROOT"/src/*.c | tr -d '"' | sort -u); do
		grep -q "^\.It Cm $e\$" "$DOC/agora-state.5" || fail "agora-state.5 does not describe $e"
	done
}

@test "agora.7 names every crash point" {
	local p
	for p in $(grep -oh 'ag_crash_point("[a-z-]*")' "$AGORA_ROOT"/src/*.c | sed 's/.*("\(.*\)")/\1/' | sort -u); do
		grep -q "^\.It Cm $p\$" "$DOC/agora.7" || fail "agora.7 does not describe crash point $p"
	done
}

@test "agora-state.5 describes every agora.conf key that conf.c knows" {
	local k
	for k in $(grep -o 'strcmp(key, "[a-z]*")' "$AGORA_ROOT/src/conf.c" | sed 's/.*"\(.*\)")/\1/' | sort -u); do
		grep -qi "^\.It Cm $k\( \|\$\)" "$DOC/agora-state.5" || fail "agora-state.5 does not describe the key $k"
	done
}

@test "every runnable example reads in the rendered page as it runs" {
	local f line cmd in
	for f in $PAGES; do
		run -0 render "$f"
		local shown=$output in=0
		while IFS= read -r line; do
			case $line in
			'.Sh EXAMPLES') in=1; continue ;;
			'.Sh '*) in=0; continue ;;
			'.Dl '*) [ "$in" = 1 ] || continue ;;
			*) continue ;;
			esac
			cmd=$(unescape "${line#.Dl }")
			printf '%s\n' "$shown" | grep -qxF "           $cmd" ||
				fail "$f: the example '$cmd' renders differently"
		done < "$DOC/$f"
	done
}

@test "the EXAMPLES of agora.1 run as shown" {
	run_examples agora.1
}

@test "the EXAMPLES of agora-init.1 run as shown" {
	run_examples agora-init.1
}

@test "the EXAMPLES of agora-validate.1 run as shown" {
	run_examples agora-validate.1
}

@test "the EXAMPLES of agora-submit.1 run as shown" {
	run_examples agora-submit.1
}

@test "the EXAMPLES of agora-reconcile.1 run as shown" {
	run_examples agora-reconcile.1
}

@test "the EXAMPLES of agora-serve.1 run as shown" {
	run_examples agora-serve.1
}

@test "the EXAMPLES of agora-watch.1 run as shown" {
	run_examples agora-watch.1
}

@test "the EXAMPLES of agora-status.1 run as shown" {
	run_examples agora-status.1
}

@test "the EXAMPLES of agora-ctl.1 run as shown" {
	run_examples agora-ctl.1
}

@test "the EXAMPLES of agora-show.1 run as shown" {
	run_examples agora-show.1
}

@test "the EXAMPLES of agora-apply.1 run as shown" {
	run_examples agora-apply.1
}

@test "the EXAMPLES of agora-audit.1 run as shown" {
	run_examples agora-audit.1
}

@test "the EXAMPLES of agora-verify.1 run as shown" {
	run_examples agora-verify.1
}

@test "the EXAMPLES of agora-replicate.1 run as shown" {
	run_examples agora-replicate.1
}

@test "the EXAMPLES of agora-bundle.5 run as shown" {
	run_examples agora-bundle.5
}

@test "the EXAMPLES of agora-plan.5 run as shown" {
	run_examples agora-plan.5
}

@test "the EXAMPLES of agora-state.5 run as shown" {
	run_examples agora-state.5
}

@test "the EXAMPLES of agora.7 run as shown" {
	run_examples agora.7
}

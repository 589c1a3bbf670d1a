#!/usr/bin/env bats
# The object store (src/store.c) through agora-helper: bases imported into
# objects.git, checkouts, captures, patches, outputs; checked with plain git.
load lib/common

setup() {
	common_setup
	# the git command line of the tests ignores the machine's configuration
	export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
	export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com
	export GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.com
	agora_init
	S=$D/objects.git
}

# srcrepo DIR: a repository whose main holds two commits, tagged v1 on the first.
srcrepo() {
	git init -q -b main "$1"
	printf 'one\n' > "$1/a.txt"
	git -C "$1" add -A
	git -C "$1" commit -qm first
	git -C "$1" tag v1
	printf 'hello\nworld\n' > "$1/a.txt"
	printf 'keep\n' > "$1/keep"
	printf '\000\001\002binary\377' > "$1/bin.dat"
	printf 'caf\351 latin-1\n' > "$1/latin1.txt"
	mkdir -p "$1/d/e"
	printf 'deep\n' > "$1/d/e/x"
	printf '#!/bin/sh\necho hi\n' > "$1/run.sh"
	chmod 755 "$1/run.sh"
	printf 'to be renamed, with enough text in it to be similar\n' > "$1/old-name"
	printf 'to mode\n' > "$1/mode"
	: > "$1/empty"
	ln -s a.txt "$1/link"
	git -C "$1" add -A
	git -C "$1" commit -qm second
}

# import REPO REV: the base commit, into $base.
import() {
	run -0 --separate-stderr agora-helper import "$S" "$1" "$2"
	base=$output
}

# capture DIR RUN ITEM [BASELINE]: sets tree, patch, sha, commit.
capture() {
	run -0 --separate-stderr agora-helper capture "$S" "$1" "$base" "$2" "$3" 1 ${4:+"$4"}
	tree=$(sed -n 's/^tree //p' <<< "$output")
	patch=$(sed -n 's/^patch //p' <<< "$output")
	sha=$(sed -n 's/^sha256 //p' <<< "$output")
	commit=$(sed -n 's/^commit //p' <<< "$output")
}

# git_apply_check PATCH TREE: git apply, the command, on a checkout of
# $base made by git gives TREE.
git_apply_check() {
	rm -rf chk
	git init -q chk
	git -C chk fetch -q "$S" "refs/agora/bases/$base"
	git -C chk checkout -q --detach FETCH_HEAD
	git --git-dir="$S" cat-file blob "$1" > "$BATS_TEST_TMPDIR/patch.diff"
	git -C chk apply --index "$BATS_TEST_TMPDIR/patch.diff"
	assert_equal "$(git -C chk write-tree)" "$2"
}

# rawtree NAME MODE OID: a tree object with one entry, written as is.
rawtree() {
	python3 -c '
import sys
name, mode, oid = sys.argv[1].encode("latin-1"), sys.argv[2].encode(), bytes.fromhex(sys.argv[3])
sys.stdout.buffer.write(mode + b" " + name + b"\0" + oid)' "$1" "$2" "$3" |
		git --git-dir="$S" hash-object -t tree -w --literally --stdin
}

@test "objects written to the store are fsynced (libgit2's fsync of the gitdir is on)" {
	srcrepo src
	import src main
	agora-helper checkout "$S" "$base" wt
	echo changed > wt/a.txt
	strace -f -y -e trace=fsync,fdatasync -o trace agora-helper capture "$S" wt "$base" r i 1 > /dev/null
	run -0 grep -c "fsync([0-9]*<$S/objects/" trace
	[ "$output" -ge 3 ]	# the blob, the tree, the patch, the commit, their directories
	run -0 grep -c "<$S/refs/agora/runs/r/i.lock>" trace
}

@test "import fetches the base with its history under refs/agora/bases/<id>" {
	srcrepo src
	import src main
	assert_equal "$base" "$(git -C src rev-parse main)"
	assert_equal "$(git --git-dir="$S" rev-parse "refs/agora/bases/$base")" "$base"
	assert_equal "$(git --git-dir="$S" rev-list --count "$base")" 2
	run -0 git --git-dir="$S" fsck --connectivity-only --no-dangling
}

@test "import resolves a branch, a tag, a commit id and an expression" {
	srcrepo src
	import src v1
	assert_equal "$base" "$(git -C src rev-parse v1^{commit})"
	import src "$(git -C src rev-parse main)"
	assert_equal "$base" "$(git -C src rev-parse main)"
	import src main~1
	assert_equal "$base" "$(git -C src rev-parse v1^{commit})"
	run -0 git --git-dir="$S" for-each-ref --format='%(refname)' refs/agora/bases/
	assert_equal "${#lines[@]}" 2
}

@test "after import nothing depends on the source repository" {
	srcrepo src
	import src main
	want=$(git -C src rev-parse main^{tree})
	rm -rf src
	run -0 agora-helper checkout "$S" "$base" wt
	run -0 agora-helper tree "$S" wt
	assert_output "$want"
}

@test "import of a missing repository fails for good and names it" {
	run -100 --separate-stderr agora-helper import "$S" "$BATS_TEST_TMPDIR/nope" main
	assert_stderr "agora-helper: cannot open repository '$BATS_TEST_TMPDIR/nope': No such file or directory"
	mkdir notrepo
	run -100 --separate-stderr agora-helper import "$S" notrepo main
	assert_stderr "agora-helper: cannot open repository 'notrepo': could not find repository from '$(realpath notrepo)'"
}

@test "an unknown base fails for good and names base and repository" {
	srcrepo src
	run -100 --separate-stderr agora-helper import "$S" src nosuchbranch
	assert_stderr "agora-helper: unknown base 'nosuchbranch' in repository 'src'"
	run -100 --separate-stderr agora-helper import "$S" src 0123456789012345678901234567890123456789
	assert_stderr "agora-helper: unknown base '0123456789012345678901234567890123456789' in repository 'src'"
	run -0 git --git-dir="$S" for-each-ref
	assert_output ""
}

@test "checkout writes every file byte for byte with its mode, links and directories" {
	srcrepo src
	import src main
	run -0 agora-helper checkout "$S" "$base" wt
	cmp wt/bin.dat src/bin.dat
	cmp wt/latin1.txt src/latin1.txt
	cmp wt/d/e/x src/d/e/x
	assert_equal "$(stat -c %a wt/run.sh)" 755
	assert_equal "$(stat -c %a wt/a.txt)" 644
	assert_equal "$(stat -c %s wt/empty)" 0
	[ -L wt/link ]
	assert_equal "$(readlink wt/link)" a.txt
	run -0 agora-helper tree "$S" wt
	assert_output "$(git -C src rev-parse main^{tree})"
}

@test "checkout applies no attribute: eol, ident and filters leave the bytes alone" {
	git init -q -b main src
	printf 'line $Id$\nsecond\n' > src/f.txt
	printf 'crlf\r\nkept\r\n' > src/g.txt
	git -C src add -A
	git -C src commit -qm files
	printf '* text eol=crlf ident\n' > src/.gitattributes
	git -C src add .gitattributes
	git -C src commit -qm attributes
	git -C src config core.autocrlf true
	import src main
	run -0 agora-helper checkout "$S" "$base" wt
	git --git-dir="$S" cat-file blob "$base:f.txt" > want-f
	git --git-dir="$S" cat-file blob "$base:g.txt" > want-g
	cmp wt/f.txt want-f
	cmp wt/g.txt want-g
	# git itself would write CRLF and expand $Id$
	run -1 grep -q $'\r' wt/f.txt
	run -0 grep -qxF 'line $Id$' wt/f.txt
}

@test "checkout into a directory that is not empty is refused" {
	srcrepo src
	import src main
	mkdir wt
	touch wt/stale
	run -100 --separate-stderr agora-helper checkout "$S" "$base" wt
	assert_stderr "agora-helper: cannot check out into 'wt': the directory is not empty"
}

@test "checkout of an object that is not in the store, or not a tree, says so" {
	run -100 --separate-stderr agora-helper checkout "$S" 0123456789012345678901234567890123456789 wt
	assert_stderr "agora-helper: object '0123456789012345678901234567890123456789' is not in the store '$S'"
	run -100 --separate-stderr agora-helper checkout "$S" main wt
	assert_stderr "agora-helper: invalid tree or commit id 'main'"
	blob=$(echo x | git --git-dir="$S" hash-object -w --stdin)
	run -100 --separate-stderr agora-helper checkout "$S" "$blob" wt
	assert_stderr "agora-helper: object '$blob' in '$S' is neither a tree nor a commit"
}

@test "checkout refuses tree entries that would escape the directory" {
	blob=$(echo evil | git --git-dir="$S" hash-object -w --stdin)
	for name in .. . .git .GIT a/b; do
		t=$(rawtree "$name" 100644 "$blob")
		rm -rf wt
		run -100 --separate-stderr agora-helper checkout "$S" "$t" wt
		assert_stderr "agora-helper: refusing tree entry '$name' in '.' of '$S': it would escape the directory"
	done
	# one level down too
	inner=$(rawtree .. 100644 "$blob")
	t=$(rawtree sub 40000 "$inner")
	rm -rf wt
	run -100 --separate-stderr agora-helper checkout "$S" "$t" wt
	assert_stderr "agora-helper: refusing tree entry '..' in 'sub' of '$S': it would escape the directory"
	run -0 find wt
	assert_output $'wt\nwt/sub'
}

@test "checkout makes a submodule an empty directory, and capture keeps it" {
	git init -q -b main sub
	git -C sub commit -q --allow-empty -m sub
	git init -q -b main src
	echo top > src/top
	git -C src add top
	git -C src update-index --add --cacheinfo "160000,$(git -C sub rev-parse HEAD),lib"
	git -C src commit -qm with-submodule
	import src main
	run -0 agora-helper checkout "$S" "$base" wt
	[ -d wt/lib ]
	run -0 ls -A wt/lib
	assert_output ""
	capture wt r i
	assert_equal "$patch" -
	assert_equal "$tree" "$(git -C src rev-parse main^{tree})"
}

@test "capture covers edits, binary, non-UTF-8, add, delete, rename, mode, links and empty files" {
	srcrepo src
	import src main
	agora-helper checkout "$S" "$base" wt
	printf 'hello\nagora\n' > wt/a.txt
	printf '\377\376\000new binary\000' > wt/bin.dat
	printf '\000\001 a new binary file' > wt/new.bin
	printf 'na\357ve \200 text\n' > wt/latin1.txt
	rm wt/keep
	mv wt/old-name wt/new-name
	chmod 755 wt/mode
	ln -sfn keep wt/link
	ln -s d/e/x wt/newlink
	: > wt/new-empty
	rm wt/empty
	printf 'now\n' > wt/d/e/y
	mkdir wt/empty-dir
	capture wt r i
	[ "$patch" != - ]
	run -0 git --git-dir="$S" cat-file blob "$patch"
	assert_output --partial 'GIT binary patch'
	assert_output --partial 'rename from old-name'
	assert_output --partial 'new mode 100755'
	assert_output --partial 'new file mode 120000'
	assert_output --partial 'deleted file mode 100644'
	git_apply_check "$patch" "$tree"
	# and the files of that tree are those of wt
	cmp chk/bin.dat wt/bin.dat
	cmp chk/new.bin wt/new.bin
	cmp chk/latin1.txt wt/latin1.txt
	assert_equal "$(readlink chk/newlink)" d/e/x
	assert_equal "$(stat -c %a chk/mode)" 755
	[ ! -e chk/empty-dir ]
}

@test "capture takes type changes: a file becomes a link, a directory a file, a link a directory" {
	srcrepo src
	import src main
	agora-helper checkout "$S" "$base" wt
	rm wt/a.txt
	ln -s keep wt/a.txt
	rm -r wt/d
	echo file > wt/d
	rm wt/link
	mkdir wt/link
	echo inside > wt/link/f
	capture wt r i
	git_apply_check "$patch" "$tree"
	run -0 agora-helper apply "$S" "$base" "$patch"
	assert_output "$tree"
}

@test "no global git configuration changes a capture: core.attributesFile with -diff" {
	srcrepo src
	import src main
	agora-helper checkout "$S" "$base" wt
	echo changed > wt/a.txt
	mkdir home
	printf '[core]\n\tattributesFile = %s/home/attrs\n\tabbrev = 7\n[diff]\n\tnoprefix = true\n' \
		"$BATS_TEST_TMPDIR" > home/.gitconfig
	printf '* -diff\n' > home/attrs
	# git itself, with that configuration, calls the change binary
	run -1 env -u GIT_CONFIG_GLOBAL HOME="$BATS_TEST_TMPDIR/home" git -C wt diff --no-index ../src/a.txt a.txt
	assert_output --partial 'Binary files'
	run -0 --separate-stderr env -u GIT_CONFIG_GLOBAL HOME="$BATS_TEST_TMPDIR/home" XDG_CONFIG_HOME="$BATS_TEST_TMPDIR/home" \
		agora-helper capture "$S" wt "$base" r i 1
	patch=$(sed -n 's/^patch //p' <<< "$output")
	run -0 git --git-dir="$S" cat-file blob "$patch"
	assert_output --partial $'--- a/a.txt\n+++ b/a.txt'
	assert_output --partial '+changed'
	refute_output --partial 'Binary files'
}

@test "the patch hash is the sha256 of the patch blob's bytes" {
	srcrepo src
	import src main
	agora-helper checkout "$S" "$base" wt
	echo changed > wt/a.txt
	capture wt r i
	assert_equal "$sha" "$(git --git-dir="$S" cat-file blob "$patch" | sha256sum | cut -d' ' -f1)"
}

@test "capture leaves .git out: a worker's repository is not part of the patch" {
	srcrepo src
	import src main
	agora-helper checkout "$S" "$base" wt
	git init -q wt
	mkdir -p wt/d/.git
	echo x > wt/d/.git/config
	capture wt r i
	assert_equal "$patch" -
	assert_equal "$tree" "$(git -C src rev-parse main^{tree})"
}

@test "an unchanged worktree gives no patch, no commit and no ref" {
	srcrepo src
	import src main
	agora-helper checkout "$S" "$base" wt
	capture wt r i
	assert_equal "$patch" -
	assert_equal "$sha" -
	assert_equal "$commit" -
	assert_equal "$tree" "$(git -C src rev-parse main^{tree})"
	run -1 git --git-dir="$S" rev-parse --verify -q refs/agora/runs/r/i
}

@test "the result commit is on refs/agora/runs/RUN/ITEM: parent base, fixed author, message" {
	srcrepo src
	import src main
	agora-helper checkout "$S" "$base" wt
	echo changed > wt/a.txt
	capture wt fanout-1 edit-alpha
	assert_equal "$(git --git-dir="$S" rev-parse refs/agora/runs/fanout-1/edit-alpha)" "$commit"
	run -0 git --git-dir="$S" log -1 --format='%P|%T|%an <%ae>|%cn <%ce>|%at|%s' refs/agora/runs/fanout-1/edit-alpha
	assert_output "$base|$tree|agora <agora@localhost>|agora <agora@localhost>|1700000000|fanout-1/edit-alpha attempt 1"
	run -0 git --git-dir="$S" log -p refs/agora/runs/fanout-1/edit-alpha
	assert_output --partial '+changed'
}

@test "ids that git refuses in ref names are written %XX in the ref" {
	srcrepo src
	import src main
	agora-helper checkout "$S" "$base" wt
	echo changed > wt/a.txt
	capture wt 'run:1..x.' 'it.lock'
	assert_equal "$(git --git-dir="$S" rev-parse 'refs/agora/runs/run%3A1%2E.x%2E/it%2Elock')" "$commit"
}

@test "capture refuses what git cannot hold, naming it" {
	srcrepo src
	import src main
	agora-helper checkout "$S" "$base" wt
	mkfifo wt/d/pipe
	run -100 --separate-stderr agora-helper capture "$S" wt "$base" r i 1
	assert_stderr "agora-helper: cannot capture 'wt/d/pipe': not a regular file, directory or symbolic link"
}

@test "a patch applies to its baseline in the store as with git apply" {
	srcrepo src
	import src main
	agora-helper checkout "$S" "$base" wt
	echo changed >> wt/a.txt
	mv wt/old-name wt/renamed
	capture wt r i
	run -0 agora-helper apply "$S" "$base" "$patch"
	assert_output "$tree"
}

@test "a patch that does not apply is a conflict, exit 1, naming the patch" {
	srcrepo src
	import src main
	agora-helper checkout "$S" "$base" wa
	printf 'changed by a\n' > wa/a.txt
	capture wa r a
	pa=$patch
	agora-helper checkout "$S" "$base" wb
	printf 'changed by b\n' > wb/a.txt
	capture wb r b
	pb=$patch
	run -0 agora-helper apply "$S" "$base" "$pa"
	ta=$output
	run -1 --separate-stderr agora-helper apply "$S" "$ta" "$pb"
	assert_stderr "agora-helper: patch '$pb' does not apply to 'a.txt': hunk at line 1 did not apply"
}

@test "two patches that create the same file conflict" {
	srcrepo src
	import src main
	agora-helper checkout "$S" "$base" wa
	echo a > wa/new
	capture wa r a
	pa=$patch
	agora-helper checkout "$S" "$base" wb
	echo b > wb/new
	capture wb r b
	pb=$patch
	run -0 agora-helper apply "$S" "$base" "$pa"
	run -1 --separate-stderr agora-helper apply "$S" "$output" "$pb"
	assert_stderr "agora-helper: patch '$pb' does not apply: it creates 'new', which already exists"
}

@test "a needs worktree is the base with upstream patches applied, and its patch is its own" {
	srcrepo src
	import src main
	agora-helper checkout "$S" "$base" wa
	echo 'from a' > wa/a-file
	capture wa r a
	pa=$patch ta=$tree
	run -0 agora-helper worktree "$S" "$base" wb "$pa"
	baseline=$output
	assert_equal "$baseline" "$ta"
	assert_equal "$(cat wb/a-file)" 'from a'
	echo 'from b' > wb/b-file
	capture wb r b "$baseline"
	run -0 git --git-dir="$S" cat-file blob "$patch"
	assert_output --partial 'b-file'
	refute_output --partial 'a-file'
	# b's patch applies on top of a's, with git apply too
	rm -rf chk
	git init -q chk
	git -C chk fetch -q "$S" "refs/agora/bases/$base"
	git -C chk checkout -q --detach FETCH_HEAD
	git --git-dir="$S" cat-file blob "$pa" | git -C chk apply --index
	git --git-dir="$S" cat-file blob "$patch" | git -C chk apply --index
	assert_equal "$(git -C chk write-tree)" "$tree"
}

@test "a needs worktree whose patches conflict names the patch that does not apply" {
	srcrepo src
	import src main
	agora-helper checkout "$S" "$base" wa
	echo a > wa/keep
	capture wa r a
	pa=$patch
	agora-helper checkout "$S" "$base" wb
	echo b > wb/keep
	capture wb r b
	run -1 --separate-stderr agora-helper worktree "$S" "$base" wc "$pa" "$patch"
	assert_output "conflict at 1"
	assert_stderr "agora-helper: patch '$patch' does not apply to 'keep': hunk at line 1 did not apply"
	[ ! -e wc ]
}

@test "outputs become blobs listed by path, subdirectories too" {
	mkdir -p out/sub
	printf 'report\n' > out/report.txt
	printf '\000\001' > out/sub/data.bin
	: > out/empty
	run -0 agora-helper outputs "$S" out
	assert_equal "${lines[0]}" "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391 0 empty"
	assert_equal "${lines[1]}" "$(git hash-object out/report.txt) 7 report.txt"
	assert_equal "${lines[2]}" "$(git hash-object out/sub/data.bin) 2 sub/data.bin"
	assert_equal "${#lines[@]}" 3
	assert_equal "$(git --git-dir="$S" cat-file blob "$(git hash-object out/report.txt)")" report
}

@test "a missing outputs directory has no outputs" {
	run -0 agora-helper outputs "$S" nothing-here
	assert_output ""
}

@test "outputs refuse symbolic links and other file types" {
	mkdir out
	ln -s /etc/passwd out/escape
	run -100 --separate-stderr agora-helper outputs "$S" out
	assert_stderr "agora-helper: output 'escape' is a symbolic link; outputs must be regular files"
	rm out/escape
	mkdir out/sub
	ln -s .. out/sub/up
	run -100 --separate-stderr agora-helper outputs "$S" out
	assert_stderr "agora-helper: output 'sub/up' is a symbolic link; outputs must be regular files"
	rm out/sub/up
	mkfifo out/fifo
	run -100 --separate-stderr agora-helper outputs "$S" out
	assert_stderr "agora-helper: output 'fifo' is not a regular file"
}

@test "outputs are capped in number and in size" {
	mkdir out
	for i in $(seq 1 1001); do : > "out/f$i"; done
	run -100 --separate-stderr agora-helper outputs "$S" out
	assert_stderr "agora-helper: more than 1000 outputs in 'out'"
	rm -r out
	mkdir out
	truncate -s 1025M out/huge	# sparse: refused before it is read
	run -100 --separate-stderr agora-helper outputs "$S" out
	assert_stderr "agora-helper: outputs in 'out' exceed 1073741824 bytes at 'huge'"
}

@test "output names must be printable UTF-8" {
	mkdir out
	: > "out/$(printf 'bad\001name')"
	run -100 --separate-stderr agora-helper outputs "$S" out
	assert_stderr "agora-helper: output 'bad\\x01name' has a name that is not printable UTF-8"
}

@test "hostile repository: no filter driver, fsmonitor or hook of it ever runs" {
	T=$BATS_TEST_TMPDIR
	mkdir hooks
	git init -q -b main src
	printf '* filter=evil diff=evil\n' > src/.gitattributes
	printf 'data\n' > src/f
	printf 'more\n' > src/g
	git -C src add -A
	git -C src commit -qm hostile
	# planted after the commit, so that this test's own git commands ran none of it
	git -C src config filter.evil.smudge "sh -c 'touch $T/marker-smudge; cat'"
	git -C src config filter.evil.clean "sh -c 'touch $T/marker-clean; cat'"
	git -C src config filter.evil.required true
	git -C src config diff.evil.textconv "sh -c 'touch $T/marker-textconv; cat'"
	git -C src config diff.evil.command "sh -c 'touch $T/marker-diffcmd'"
	printf '#!/bin/sh\ntouch %s/marker-fsmonitor\n' "$T" > fsmonitor
	chmod +x fsmonitor
	git -C src config core.fsmonitor "$T/fsmonitor"
	git -C src config core.sshCommand "sh -c 'touch $T/marker-ssh'"
	git -C src config uploadpack.packObjectsHook "sh -c 'touch $T/marker-packobjects'"
	git -C src config core.hooksPath "$T/hooks"
	for h in applypatch-msg pre-applypatch post-applypatch pre-commit pre-merge-commit \
	    prepare-commit-msg commit-msg post-commit pre-rebase post-checkout post-merge \
	    pre-push pre-receive update proc-receive post-receive post-update \
	    reference-transaction push-to-checkout pre-auto-gc post-rewrite \
	    fsmonitor-watchman post-index-change; do
		printf '#!/bin/sh\ntouch %s/marker-hook-%s\n' "$T" "$h" > "hooks/$h"
		chmod +x "hooks/$h"
		cp "hooks/$h" "src/.git/hooks/$h"
	done
	import src main
	run -0 agora-helper checkout "$S" "$base" wt
	# the worker may plant a repository of its own in the worktree
	mkdir -p wt/.git
	cp src/.git/config wt/.git/config
	echo changed > wt/f
	rm wt/g
	echo new > wt/h
	capture wt r i
	run -0 agora-helper apply "$S" "$base" "$patch"
	assert_output "$tree"
	cmp wt/f <(printf 'changed\n')
	run -0 find "$T" -name 'marker-*'
	assert_output ""
	# the plants are live: git itself runs them
	git -C src status > /dev/null 2>&1
	rm src/f
	git -C src checkout -- f 2> /dev/null
	git -C src commit -q --allow-empty -m probe 2> /dev/null
	[ -e "$T/marker-fsmonitor" ]
	[ -e "$T/marker-smudge" ]
	[ -e "$T/marker-clean" ]
	[ -e "$T/marker-hook-pre-commit" ]
	[ -e "$T/marker-hook-post-checkout" ]
}

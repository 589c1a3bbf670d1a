#!/usr/bin/env bats
# agora-apply: a run's patches as commits on a new branch of a repository.
load lib/common
load lib/artifacts

setup() { artifacts_setup; }

# two_items: run r whose item b (listed first) needs a's patch; a edits
# alpha.ts, renames shared.ts and adds a binary file, b edits beta.ts.
two_items() {
	mkapp
	held_run r "$(item b true '["a"]' '[]' '"title":"edit beta"'),$(item a true)"
	worktree wa
	printf 'export const alpha = 10;\n' > wa/alpha.ts
	mv wa/shared.ts wa/common.ts
	printf '\000binary\377' > wa/new.bin
	done_item r a wa
	pa=$patch
	worktree wb "$pa"
	printf 'export const beta = 20;\n' > wb/beta.ts
	done_item r b wb - "$pa"
	pb=$patch
	release r
}

# snapshot: what a repository is, to compare before and after.
snapshot() {
	git -C app for-each-ref --format='%(refname) %(objectname)'
	git -C app rev-parse HEAD
	git -C app status --porcelain
	git -C app count-objects -v | grep -v '^size'
	git -C app diff
	git -C app diff --cached
}

@test "agora-apply commits every done patch, dependencies first, on agora/RUN" {
	two_items
	run -0 --separate-stderr agora-apply r --repo app
	assert_equal "${#lines[@]}" 2
	assert_equal "${lines[0]}" "$(git -C app rev-parse agora/r~1) a"
	assert_equal "${lines[1]}" "$(git -C app rev-parse agora/r) b"
	assert_equal "$(git -C app rev-parse agora/r~2)" "$base"
	run -0 git -C app log --format='%s|%an <%ae>' main..agora/r
	assert_output $'r/b: edit beta|agora <agora@localhost>\nr/a|agora <agora@localhost>'
	# the branch holds exactly what the items left in their worktrees
	assert_equal "$(git -C app rev-parse agora/r^{tree})" "$(agora-helper tree "$S" wb)"
	git -C app cat-file blob agora/r:new.bin | cmp - wb/new.bin
	run -0 git -C app show --format= --name-status agora/r~1
	assert_output --partial 'common.ts'
}

@test "each commit names its run, item, attempt and patch" {
	two_items
	agora-apply r --repo app > /dev/null
	run -0 git -C app log -1 --format=%B agora/r~1
	assert_output "r/a

Agora-Run: r
Agora-Item: a
Agora-Attempt: 1
Agora-Patch: git:$pa
Agora-Patch-Sha256: $(git --git-dir="$S" cat-file blob "$pa" | sha256sum | cut -d' ' -f1)"
}

@test "agora-apply leaves the working tree, the index and HEAD alone" {
	two_items
	echo local >> app/alpha.ts
	echo staged > app/staged.txt
	git -C app add staged.txt
	before=$(git -C app rev-parse HEAD; git -C app status --porcelain; git -C app diff; git -C app diff --cached)
	agora-apply r --repo app --branch review/r > /dev/null
	after=$(git -C app rev-parse HEAD; git -C app status --porcelain; git -C app diff; git -C app diff --cached)
	assert_equal "$after" "$before"
	run -0 git -C app rev-parse --verify -q refs/heads/review/r
}

@test "the same run gives the same commits in any clone" {
	two_items
	git clone -q app app2
	run -0 agora-apply r --repo app
	first=$output
	run -0 agora-apply r --repo app2
	assert_equal "$output" "$first"
}

@test "on a conflict agora-apply names the item, exits 1 and leaves the target as it was" {
	mkapp
	held_run r "$(item a true),$(item c true)"
	worktree wa
	printf 'export const alpha = "a";\n' > wa/alpha.ts
	done_item r a wa
	worktree wc
	printf 'export const alpha = "c";\n' > wc/alpha.ts
	done_item r c wc
	pc=$patch
	release r
	before=$(snapshot)
	run -1 --separate-stderr agora-apply r --repo app
	assert_output ""
	assert_stderr "agora-apply: item 'c' of run 'r': patch '$pc' does not apply to 'alpha.ts': hunk at line 1 did not apply"
	assert_equal "$(snapshot)" "$before"
	run -1 git -C app rev-parse --verify -q refs/heads/agora/r
}

@test "an existing branch is refused and left where it was" {
	two_items
	git -C app branch agora/r main
	run -100 --separate-stderr agora-apply r --repo app
	assert_stderr "agora-apply: branch 'agora/r' already exists in repository 'app'"
	assert_equal "$(git -C app rev-parse agora/r)" "$(git -C app rev-parse main)"
}

@test "a repository without the base commit is refused" {
	two_items
	git init -q other
	run -100 --separate-stderr agora-apply r --repo other
	assert_stderr "agora-apply: base commit $base of run 'r' is not in repository 'other'"
}

@test "a missing repository and a bad branch name are refused" {
	two_items
	run -100 --separate-stderr agora-apply r --repo nope
	assert_stderr "agora-apply: cannot open repository 'nope': failed to resolve path 'nope': No such file or directory"
	run -100 --separate-stderr agora-apply r --repo app --branch 'bad..name'
	assert_stderr "agora-apply: invalid branch name 'bad..name'"
}

@test "a run with no patch has nothing to apply" {
	mkapp
	held_run r "$(item a true)"
	worktree wa
	done_item r a wa
	release r
	run -100 --separate-stderr agora-apply r --repo app
	assert_stderr "agora-apply: run 'r' has no patch to apply"
	run -100 --separate-stderr agora-apply nope --repo app
	assert_stderr "agora-apply: unknown run 'nope'"
}

@test "items that are not done are left out" {
	mkapp
	held_run r "$(item a true),$(item f true)"
	worktree wa
	printf 'export const alpha = 3;\n' > wa/alpha.ts
	done_item r a wa
	agora-ctl r CANCEL f
	release r
	assert_equal "$(item_status r f)" cancelled
	run -0 agora-apply r --repo app
	assert_output "$(git -C app rev-parse agora/r) a"
}

@test "agora-apply needs --repo and one run" {
	run -100 --separate-stderr agora-apply r
	assert_stderr "usage: agora-apply [-d dir] run --repo path [--branch branch]"
	run -100 --separate-stderr agora-apply --repo app
	assert_stderr "usage: agora-apply [-d dir] run --repo path [--branch branch]"
}

# Fixture runs with patches, for agora-show and agora-apply. Until an
# executor makes artifacts, agora-helper done stands in for it: it
# captures a worktree with the store's real functions and logs the
# item.done line (with base, resultRef, patchSha256, outputs) under
# tick.lock, as the executor will.

artifacts_setup() {
	common_setup
	# the git command line of the tests ignores the machine's configuration
	export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
	export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com
	export GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.com
	agora_init
	S=$D/objects.git
}

# mkapp: the repository app, whose main holds alpha.ts, beta.ts and a binary.
mkapp() {
	git init -q -b main app
	printf 'export const alpha = 1;\n' > app/alpha.ts
	printf 'export const beta = 2;\n' > app/beta.ts
	printf 'export const shared = 0;\n' > app/shared.ts
	printf '\000\001\002' > app/logo.bin
	git -C app add -A
	git -C app commit -qm base
	base=$(agora-helper import "$S" app main)
}

# held_run ID ITEMS-JSON: a run ingested under a global PAUSE, so that no
# item of it fires; the tests mark items done with done_item.
held_run() {
	agora-ctl -g PAUSE
	plan p.json "$1" "$2"
	agora-submit p.json > /dev/null
	tick
}

# worktree DIR [PATCH...]: a checkout of $base with the patches applied.
worktree() {
	local dir=$1
	shift
	agora-helper worktree "$S" "$base" "$dir" "$@" > /dev/null
}

# done_item RUN ITEM WORKTREE [OUTPUTS] [PATCH...]: log the item done with
# what changed in WORKTREE since $base plus the patches; sets patch.
done_item() {
	local run=$1 item=$2 wt=$3 outs=${4:--}
	shift 3
	[ $# -gt 0 ] && shift
	patch=$(agora-helper done "$D" "$run" "$item" 1 "$base" "$wt" "$outs" "$@")
}

# release RUN: lift the PAUSE and tick the run to its end.
release() {
	agora-ctl -g RESUME
	drive "$1"
}

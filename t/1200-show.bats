#!/usr/bin/env bats
# agora-show: an item's patch, log, result and outputs.
load lib/common
load lib/artifacts

setup() { artifacts_setup; }

@test "agora-show prints the patch of the item's done attempt, byte for byte" {
	mkapp
	held_run r "$(item a true)"
	worktree wa
	printf 'export const alpha = "\351t\351";\n' > wa/alpha.ts
	printf '\377\000' > wa/logo.bin
	done_item r a wa
	git --git-dir="$S" cat-file blob "$patch" > want.diff
	agora-show r a > got.diff
	cmp got.diff want.diff
	run -0 grep -c 'GIT binary patch' got.diff
	# it applies to the base with git apply
	git -C app apply --check "$BATS_TEST_TMPDIR/got.diff"
}

@test "agora-show of an item that changed nothing prints nothing" {
	mkapp
	held_run r "$(item a true)"
	worktree wa
	done_item r a wa
	assert_equal "$patch" -
	run -0 --separate-stderr agora-show r a
	assert_output ""
	assert_stderr ""
	run -0 grep -c '"event":"item.done".*"base":"'"$base"'"' "$D/runs/r/status.jsonl"
	run -1 grep -q resultRef "$D/runs/r/status.jsonl"
}

@test "agora-show of an item with no done attempt says why" {
	mkapp
	held_run r "$(item a true)"
	run -100 --separate-stderr agora-show r a
	assert_stderr "agora-show: item 'a' of run 'r' has no done attempt (it is ready)"
	run -100 --separate-stderr agora-show --log r a
	assert_stderr "agora-show: item 'a' of run 'r' has not run yet (it is ready)"
}

@test "agora-show names an unknown run or item" {
	mkapp
	held_run r "$(item a true)"
	run -100 --separate-stderr agora-show r nope
	assert_stderr "agora-show: unknown item 'nope' in run 'r'"
	run -100 --separate-stderr agora-show nope a
	assert_stderr "agora-show: unknown run 'nope'"
}

@test "agora-show --log prints the latest attempt's stdout and stderr apart" {
	conf agora.maxAttempts 2
	plan p.json r "$(item a 'echo out $AGORA_ATTEMPT; echo err $AGORA_ATTEMPT >&2; [ $AGORA_ATTEMPT = 2 ]')"
	agora-submit p.json
	drive r
	assert_equal "$(item_status r a)" done
	run -0 --separate-stderr agora-show --log r a
	assert_output "out 2"
	assert_stderr "err 2"
}

@test "agora-show --log and --result show a failed item's last attempt" {
	plan p.json r "$(item a 'echo broke >&2; exit 3' '[]' '[]' '"maxAttempts":1')"
	agora-submit p.json
	drive r
	run -0 --separate-stderr agora-show --log r a
	assert_output ""
	assert_stderr broke
	run -0 --separate-stderr agora-show --result r a
	assert_output "$(cat "$D/runs/r/items/a/1/result.json")"
	assert_output --partial '"exit": 3'
}

@test "agora-show --outputs lists each output's blob, size and path" {
	mkapp
	held_run r "$(item a true)"
	worktree wa
	mkdir -p out/sub
	printf 'report\n' > out/report.txt
	printf 'x' > out/sub/one
	done_item r a wa out
	run -0 --separate-stderr agora-show --outputs r a
	assert_equal "${lines[0]}" "$(git hash-object out/report.txt) 7 report.txt"
	assert_equal "${lines[1]}" "$(git hash-object out/sub/one) 1 sub/one"
	assert_equal "${#lines[@]}" 2
	run -0 git --git-dir="$S" cat-file blob "$(git hash-object out/report.txt)"
	assert_output report
	run -0 grep -c '"outputs":\[{"path":"report.txt","ref":"git:' "$D/runs/r/status.jsonl"
}

@test "agora-show --outputs of an item without outputs prints nothing" {
	plan p.json r "$(item a true)"
	agora-submit p.json
	drive r
	run -0 --separate-stderr agora-show --outputs r a
	assert_output ""
	run -0 --separate-stderr agora-show r a
	assert_output ""
}

@test "agora-show refuses a patch whose bytes do not match the logged patchSha256" {
	mkapp
	held_run r "$(item a true)"
	worktree wa
	echo changed > wa/alpha.ts
	done_item r a wa
	# rewrite the log with a consistent hash chain but another patchSha256
	python3 - "$D/runs/r/status.jsonl" <<'PY'
import hashlib, json, sys
path = sys.argv[1]
lines = open(path, "rb").read().split(b"\n")[:-1]
out, prev = [], "0" * 64
for raw in lines:
    ev = json.loads(raw)
    if ev.get("event") == "item.done":
        ev["patchSha256"] = "0" * 64
    ev["prev"] = prev
    line = json.dumps(ev, separators=(",", ":"), ensure_ascii=False).encode()
    prev = hashlib.sha256(line).hexdigest()
    out.append(line)
open(path, "wb").write(b"\n".join(out) + b"\n")
PY
	run -100 --separate-stderr agora-show r a
	assert_stderr "agora-show: patch '$patch' of item 'a' of run 'r' does not match its patchSha256"
}

@test "agora-show takes one of --log, --result and --outputs" {
	run -100 --separate-stderr agora-show --log --result r a
	assert_stderr "usage: agora-show [-d dir] [--log | --result | --outputs] run item"
	run -100 --separate-stderr agora-show r
	assert_stderr "usage: agora-show [-d dir] [--log | --result | --outputs] run item"
}

@test "agora show runs agora-show" {
	mkapp
	held_run r "$(item a true)"
	worktree wa
	echo changed > wa/beta.ts
	done_item r a wa
	run -0 --separate-stderr agora show r a
	assert_output --partial '+changed'
}

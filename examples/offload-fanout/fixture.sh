#!/bin/sh
# fixture.sh DIR: the repository the offload-fanout plan edits, made the
# same every time (same files, author and dates, so the same commit id):
# alpha.ts, beta.ts and shared.ts in one commit on main. They have no
# blank line, so that their patches print with no trailing white space
# (agora-show(1) and agora-apply(1) show one in their EXAMPLES).
set -eu
dir=${1:?usage: fixture.sh DIR}
if [ -e "$dir" ]; then
	echo "fixture.sh: '$dir' already exists" >&2
	exit 100
fi
# no configuration, template or hook of this machine takes part
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME="Fixture" GIT_AUTHOR_EMAIL="fixture@example.com"
export GIT_COMMITTER_NAME="Fixture" GIT_COMMITTER_EMAIL="fixture@example.com"
export GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
git init -q -b main --template= "$dir"
cat > "$dir/shared.ts" <<'TS'
var prefix = "hello, ";
export function greet(who: string): string {
  return prefix + who;
}
TS
cat > "$dir/alpha.ts" <<'TS'
import { greet } from "./shared";
var name = "alpha";
export function alpha(): string {
  return greet(name);
}
TS
cat > "$dir/beta.ts" <<'TS'
import { greet } from "./shared";
var name = "beta";
export function beta(): string {
  return greet(name);
}
TS
git -C "$dir" add alpha.ts beta.ts shared.ts
git -C "$dir" commit -q -m "fixture: alpha, beta and shared"

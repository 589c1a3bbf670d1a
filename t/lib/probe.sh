#!/bin/sh
# probe.sh DIR NAME [SECONDS]: a task that records, under flock, how many
# probes of DIR run at once (DIR/max) and the order they started (DIR/starts).
dir=$1 name=$2 t=${3:-0.2}
mkdir -p "$dir"
exec 9>>"$dir/lock"
flock 9
n=$(($(cat "$dir/running" 2>/dev/null || echo 0) + 1))
echo "$n" > "$dir/running"
echo "$name" >> "$dir/starts"
[ "$n" -gt "$(cat "$dir/max" 2>/dev/null || echo 0)" ] && echo "$n" > "$dir/max"
flock -u 9
sleep "$t"
flock 9
echo $(($(cat "$dir/running") - 1)) > "$dir/running"
flock -u 9

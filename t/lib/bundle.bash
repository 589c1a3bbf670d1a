# A small sealed run for agora-audit and agora-verify: two dispatch items,
# edit (a patch and an output) and use (which needs both), in a state
# tree with an object store. Load after lib/common and lib/artifacts.

bundle_setup() {
	artifacts_setup
	T=$BATS_TEST_TMPDIR
	mkapp
	conf executor.dispatch.kind dispatch
	conf executor.dispatch.repo "$PWD/app"
	conf executor.dispatch.base main
	conf agora.maxAttempts 1
	printf '#!/bin/sh\nprintf "// by %%s\\n" "$AGORA_ITEM" >> alpha.ts\necho report > "$AGORA_OUTPUTS_DIR/report.txt"\n' > "$T/edit.sh"
	chmod +x "$T/edit.sh"
	conf subagent.edit.command "$T/edit.sh"
	PUB=$D/keys/signing.pub
	KEYNAME=$(agora-helper key-info "$PUB" | sed -n 's/^name //p')
	KEYID=$(agora-helper key-info "$PUB" | sed -n 's/^id //p')
}

# dispatch_item ID [EXTRA]: an item that runs the edit subagent.
dispatch_item() {
	printf '{"id":"%s","executor":"dispatch","inputs":{"subagent":"edit"},"depends_on":[],"resourceLocks":[]%s}' \
		"$1" "${2:+,$2}"
}

# sealed_run RUN: submit the two-item run and tick it until it is sealed.
sealed_run() {
	plan "p-$1.json" "$1" "$(dispatch_item edit),$(dispatch_item use '"needs":{"code":{"from":"edit","select":{"kind":"patch"}},"notes":{"from":"edit","select":{"kind":"output","path":"report.txt"}}}')"
	agora-submit "p-$1.json" > /dev/null
	drive "$1"
	grep -q '"event":"run.sealed"' "$D/runs/$1/status.jsonl"
	LOG=$D/runs/$1/status.jsonl
}

# b64root HEX: a hash in the base64 that checkpoints and reports use.
b64root() {
	python3 -c 'import base64, sys; print(base64.b64encode(bytes.fromhex(sys.argv[1])).decode())' "$1"
}

# root_of FILE N: the base64 Merkle root of the first N lines of FILE.
root_of() {
	b64root "$(agora-helper merkle-root "$1" "$2" | cut -d' ' -f2)"
}

# flip FILE OFFSET: flip the low bit of one byte.
flip() {
	python3 -c 'import sys
p, i = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read()); b[i] ^= 1; open(p, "wb").write(b)' "$1" "$2"
}

# done_field RUN ITEM NAME: a string field of the item's item.done line.
done_field() {
	grep '"event":"item.done"' "$D/runs/$1/status.jsonl" | grep "\"item\":\"$2\"," |
		sed -n "s/.*\"$3\":\"\\([^\"]*\\)\".*/\\1/p"
}

#!/usr/bin/env bats
# C2SP signed notes and checkpoints with Ed25519 keys (note.c), checked
# against the openssl command line and an independent key id computation.
load lib/common

setup() {
	common_setup
	agora_init
	K=$D/keys/signing.key
	P=$D/keys/signing.pub
	printf 'agora/run/r\n3\nhello\n' > body
}

# raw32 PUB: the 32 raw bytes of an Ed25519 public key, in hex
raw32() {
	openssl pkey -pubin -in "$1" -outform DER | tail -c 32 | od -An -tx1 | tr -d ' \n'
}

@test "a signed note is the body, a blank line and one em-dash signature line" {
	run -0 agora-helper note-sign "$K" body
	name=$(agora-helper key-info "$P" | sed -n 's/^name //p')
	assert_line --index 0 "agora/run/r"
	assert_line --index 1 "3"
	assert_line --index 2 "hello"
	# bats drops the blank line from lines; check the bytes
	agora-helper note-sign "$K" body > note
	run -0 sed -n 4p note
	assert_output ""
	run -0 sed -n 5p note
	assert_output --regexp "^— $name [A-Za-z0-9+/]{91}=\$"
	assert_equal "$(wc -l < note)" 5
}

@test "sign then verify; Ed25519 signs the same body to the same bytes" {
	agora-helper note-sign "$K" body > note
	agora-helper note-sign "$K" body > note2
	cmp note note2
	run -0 agora-helper note-verify "$P" note
	assert_output ok
}

@test "the key name is agora- and 16 hex digits of SHA-256 of the raw public key" {
	run -0 agora-helper key-info "$P"
	h=$(raw32 "$P" | xxd -r -p | openssl dgst -sha256 -r | cut -c1-16)
	assert_line --index 0 "name agora-$h"
	# the private key gives the same name and id
	run -0 agora-helper key-info "$K"
	assert_line --index 0 "name agora-$h"
}

@test "interop: the key id follows the C2SP rule, recomputed with python3" {
	name=$(agora-helper key-info "$P" | sed -n 's/^name //p')
	raw=$(raw32 "$P")
	want=$(python3 -c 'import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode() + b"\n\x01" + bytes.fromhex(sys.argv[2])).digest()[:4].hex())' "$name" "$raw")
	run -0 agora-helper key-info "$P"
	assert_line --index 1 "id $want"
	# and it is the first 4 bytes of the signature line's base64
	agora-helper note-sign "$K" body > note
	got=$(sed -n 5p note | cut -d' ' -f3 | base64 -d | head -c 4 | od -An -tx1 | tr -d ' \n')
	assert_equal "$got" "$want"
}

@test "interop: openssl pkeyutl -verify -rawin accepts the signature over the body bytes" {
	agora-helper note-sign "$K" body > note
	# the body: everything before the blank line, its last newline included
	head -c "$(wc -c < body)" note > signed
	cmp signed body
	sed -n 5p note | cut -d' ' -f3 | base64 -d | tail -c 64 > sig
	assert_equal "$(wc -c < sig)" 64
	run -0 openssl pkeyutl -verify -pubin -inkey "$P" -rawin -in signed -sigfile sig
	assert_output "Signature Verified Successfully"
	# and refuses it over other bytes
	printf 'agora/run/r\n4\nhello\n' > other
	run -1 openssl pkeyutl -verify -pubin -inkey "$P" -rawin -in other -sigfile sig
}

@test "interop: a signature made by openssl pkeyutl verifies as a note" {
	name=$(agora-helper key-info "$P" | sed -n 's/^name //p')
	id=$(agora-helper key-info "$P" | sed -n 's/^id //p')
	openssl pkeyutl -sign -inkey "$K" -rawin -in body -out sig
	{ cat body; echo; printf '— %s %s\n' "$name" "$( { echo "$id" | xxd -r -p; cat sig; } | base64 -w0)"; } > note
	run -0 agora-helper note-verify "$P" note
	assert_output ok
}

@test "a flipped bit in any byte of the note fails verification" {
	agora-helper note-sign "$K" body > note
	mkdir bad
	python3 -c 'b = open("note", "rb").read()
for i in range(len(b)):
    x = bytearray(b); x[i] ^= 1; open("bad/%03d" % i, "wb").write(x)'
	assert_equal "$(ls bad | wc -l)" "$(wc -c < note)"
	for f in bad/*; do
		run -100 agora-helper note-verify "$P" "$f"
	done
}

@test "a changed body fails with the reason" {
	agora-helper note-sign "$K" body > note
	sed -i '2s/3/4/' note
	run -100 --separate-stderr agora-helper note-verify "$P" note
	name=$(agora-helper key-info "$P" | sed -n 's/^name //p')
	id=$(agora-helper key-info "$P" | sed -n 's/^id //p')
	assert_stderr "agora-helper: signature by key '$name' (id $id) does not verify"
}

@test "another key's note fails: no signature by this key" {
	agora-helper note-sign "$K" body > note
	agora-init other >/dev/null
	name=$(agora-helper key-info other/keys/signing.pub | sed -n 's/^name //p')
	id=$(agora-helper key-info other/keys/signing.pub | sed -n 's/^id //p')
	run -100 --separate-stderr agora-helper note-verify other/keys/signing.pub note
	assert_stderr "agora-helper: no signature by key '$name' (id $id)"
}

@test "a second signature by an unknown key is ignored" {
	agora-helper note-sign "$K" body > note
	agora-init other >/dev/null
	agora-helper note-sign other/keys/signing.key body | tail -n 1 >> note
	assert_equal "$(wc -l < note)" 6
	run -0 agora-helper note-verify "$P" note
	run -0 agora-helper note-verify other/keys/signing.pub note
}

@test "malformed notes are refused, naming the line" {
	agora-helper note-sign "$K" body > note
	sed '5s/^— /- /' note > bad
	run -100 --separate-stderr agora-helper note-verify "$P" bad
	assert_stderr "agora-helper: line 5: signature line does not start with an em dash and a space"
	head -n 3 note > bad
	run -100 --separate-stderr agora-helper note-verify "$P" bad
	assert_stderr "agora-helper: note has no blank line before its signatures"
	head -n 4 note > bad
	run -100 --separate-stderr agora-helper note-verify "$P" bad
	assert_stderr "agora-helper: note has no signature line"
	sed '5s/ [^ ]*$/ AAB=/' note > bad
	run -100 --separate-stderr agora-helper note-verify "$P" bad
	assert_stderr "agora-helper: line 5: signature: not canonical base64"
	sed '5s/$/=/' note > bad
	run -100 --separate-stderr agora-helper note-verify "$P" bad
	assert_stderr "agora-helper: line 5: signature: not base64: length 93 is not a multiple of 4"
	printf 'a\tb\n' | cat - note > bad
	run -100 --separate-stderr agora-helper note-verify "$P" bad
	assert_stderr "agora-helper: line 1: control character 0x09"
	head -c -1 note > bad
	run -100 --separate-stderr agora-helper note-verify "$P" bad
	assert_stderr "agora-helper: note does not end in a newline"
}

@test "a checkpoint: origin, size and base64 root, parsed back" {
	printf 'line 0\nline 1\nline 2\n' > log
	agora-helper checkpoint-sign "$K" agora/run/r log > cp
	run -0 agora-helper note-verify "$P" cp
	run -0 agora-helper checkpoint-parse cp
	assert_line --index 0 "origin agora/run/r"
	assert_line --index 1 "size 3"
	assert_line --index 2 "root e8d3e3ae206483e0df450ff2112c9f0aa773aeb01c3ee6e28191fea4eb7b7402"
	run -0 sed -n 3p cp
	assert_output "$(echo e8d3e3ae206483e0df450ff2112c9f0aa773aeb01c3ee6e28191fea4eb7b7402 | xxd -r -p | base64)"
}

@test "a checkpoint with a bad size or root is refused" {
	printf 'o\n03\nAAAA\n' > b1
	agora-helper note-sign "$K" b1 > cp
	run -100 --separate-stderr agora-helper checkpoint-parse cp
	assert_stderr "agora-helper: line 2: bad tree size"
	printf 'o\n3\nAAAA\n' > b1
	agora-helper note-sign "$K" b1 > cp
	run -100 --separate-stderr agora-helper checkpoint-parse cp
	assert_stderr "agora-helper: line 3: root hash is not base64 of 32 bytes"
	printf 'o\n3\n' > b1
	agora-helper note-sign "$K" b1 > cp
	run -100 --separate-stderr agora-helper checkpoint-parse cp
	assert_stderr "agora-helper: line 3: no root hash"
}

@test "the signing key is created with mode 0600" {
	run -0 stat -c %a "$K"
	assert_output 600
}

@test "a signing key readable by others is refused with a clear error" {
	chmod 0644 "$K"
	run -100 --separate-stderr agora-helper note-sign "$K" body
	assert_stderr "agora-helper: '$K': mode 0644, want 0600"
	assert_output ""
	chmod 0640 "$K"
	run -100 --separate-stderr agora-helper note-sign "$K" body
	assert_stderr "agora-helper: '$K': mode 0640, want 0600"
}

@test "a missing signing key is a clear error" {
	rm "$K"
	run -100 --separate-stderr agora-helper note-sign "$K" body
	assert_stderr "agora-helper: no signing key '$K'"
}

@test "a key file that is not a key is refused without quoting it" {
	echo 'SECRET-BYTES' > "$K"
	run -100 --separate-stderr agora-helper note-sign "$K" body
	assert_stderr "agora-helper: '$K': not a PEM private key"
}

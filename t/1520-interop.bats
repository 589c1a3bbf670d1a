#!/usr/bin/env bats
# The bundle of a sealed run checked with other tools than agora's: the
# Merkle root and the global inclusion proof by a short Python RFC 6962,
# the checkpoint's signature by openssl pkeyutl.
load lib/common
load lib/artifacts
load lib/bundle

setup() {
	bundle_setup
	sealed_run r
	agora-audit --out b.json r
	jq -r .checkpoint.base64 b.json | base64 -d > checkpoint
	jq -r .log.base64 b.json | base64 -d > log
}

@test "interop: python3 recomputes the run's Merkle root from the bundle's log, as the checkpoint says" {
	run -0 python3 - log checkpoint <<'PY'
import base64, hashlib, sys

def mth(leaves):
    # RFC 6962 2.1: split at the largest power of two smaller than n
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()

lines = open(sys.argv[1], "rb").read().split(b"\n")[:-1]
origin, size, root = open(sys.argv[2], "rb").read().split(b"\n")[:3]
size = int(size)
assert b'"event":"run.completed"' in lines[size - 1]
print(origin.decode(), size, base64.b64encode(mth(lines[:size])) == root)
PY
	assert_output "agora/run/r 8 True"
}

@test "interop: openssl pkeyutl verifies the sealed run's checkpoint signature with keys/signing.pub" {
	# the signed body is the note up to its blank line; the signature line's
	# base64 is the key id (4 bytes) and the Ed25519 signature (64)
	head -n 3 checkpoint > body
	sed -n 5p checkpoint | cut -d' ' -f3 | base64 -d | tail -c 64 > sig
	run -0 openssl pkeyutl -verify -pubin -inkey "$PUB" -rawin -in body -sigfile sig
	assert_output "Signature Verified Successfully"
	assert_equal "$(sed -n 5p checkpoint | cut -d' ' -f2)" "$KEYNAME"
	# the global checkpoint of the bundle too
	jq -r .global.checkpoint.base64 b.json | base64 -d > global
	head -n 3 global > gbody
	sed -n 5p global | cut -d' ' -f3 | base64 -d | tail -c 64 > gsig
	run -0 openssl pkeyutl -verify -pubin -inkey "$PUB" -rawin -in gbody -sigfile gsig
	assert_output "Signature Verified Successfully"
}

@test "interop: python3 checks the bundle's proof that the run is in the global log (RFC 9162 inclusion)" {
	# the second of three sealed runs: a proof of two hashes
	sealed_run r2
	sealed_run r3
	agora-audit --out b.json r2
	jq -r .checkpoint.base64 b.json | base64 -d > checkpoint
	jq -r .log.base64 b.json | base64 -d > log
	jq -r .global.checkpoint.base64 b.json | base64 -d > global
	jq -r '.global.proof[]' b.json > proof
	run -0 python3 - log checkpoint global proof <<'PY'
import base64, hashlib, json, sys

log = open(sys.argv[1], "rb").read().split(b"\n")[:-1]
cp = open(sys.argv[2], "rb").read()
_, size, root = cp.split(b"\n")[:3]
sealed = json.loads(log[int(size)])
# the entry, as agora-state(5) gives it: compact JSON in this key order
entry = json.dumps({"run": sealed["run"], "size": int(size), "root": base64.b64decode(root).hex(),
    "checkpoint": hashlib.sha256(cp).hexdigest()}, separators=(",", ":")).encode()
gorigin, gsize, groot = open(sys.argv[3], "rb").read().split(b"\n")[:3]
proof = [bytes.fromhex(h) for h in open(sys.argv[4]).read().split()]
# RFC 9162 2.1.3.2
fn, sn = sealed["logIndex"], int(gsize) - 1
r = hashlib.sha256(b"\x00" + entry).digest()
for p in proof:
    if sn == 0:
        raise SystemExit("proof too long")
    if fn & 1 or fn == sn:
        r = hashlib.sha256(b"\x01" + p + r).digest()
        while not fn & 1 and fn:
            fn >>= 1
            sn >>= 1
    else:
        r = hashlib.sha256(b"\x01" + r + p).digest()
    fn >>= 1
    sn >>= 1
print(gorigin.decode(), gsize.decode(), sealed["logIndex"], len(proof),
    sn == 0 and r == base64.b64decode(groot))
PY
	assert_output "agora/log 3 1 2 True"
}

#!/usr/bin/env bats
# RFC 6962 Merkle trees (merkle.c): known answers, proofs, and an
# independent implementation in Python (hashlib) that must agree.
load lib/common

# lines N: "line 0" .. "line N-1", one per line
lines() {
	local i=0
	: > "lines$1"
	while [ "$i" -lt "$1" ]; do
		echo "line $i" >> "lines$1"
		i=$((i + 1))
	done
}

# The independent implementation: RFC 6962 2.1 written out in Python from
# the RFC's text. Leaves are the file's lines without their newline.
#   rfc6962.py root FILE              "N HEX"
#   rfc6962.py path FILE M N          PATH(m, D[n]), a hex hash a line
#   rfc6962.py proof FILE M N         PROOF(m, D[n])
#   rfc6962.py all FILE N             every PATH and PROOF of sizes 1..N, each after
#                                     a line "inclusion M N" or "consistency M N"
write_py() {
	cat > rfc6962.py <<'PY'
import hashlib, sys
H = lambda b: hashlib.sha256(b).digest()
def mth(d):
    if not d: return H(b'')
    if len(d) == 1: return H(b'\x00' + d[0])
    k = 1
    while 2 * k < len(d): k *= 2
    return H(b'\x01' + mth(d[:k]) + mth(d[k:]))
def path(m, d):
    if len(d) <= 1: return []
    k = 1
    while 2 * k < len(d): k *= 2
    return path(m, d[:k]) + [mth(d[k:])] if m < k else path(m - k, d[k:]) + [mth(d[:k])]
def sub(m, d, b):
    if m == len(d): return [] if b else [mth(d)]
    k = 1
    while 2 * k < len(d): k *= 2
    return sub(m, d[:k], b) + [mth(d[k:])] if m <= k else sub(m - k, d[k:], False) + [mth(d[:k])]
d = open(sys.argv[2], 'rb').read().split(b'\n')[:-1]
if sys.argv[1] == 'root':
    print(len(d), mth(d).hex())
elif sys.argv[1] == 'all':
    for n in range(1, int(sys.argv[3]) + 1):
        for m in range(n):
            print('inclusion', m, n)
            for h in path(m, d[:n]): print(h.hex())
        for m in range(n + 1):
            print('consistency', m, n)
            for h in (sub(m, d[:n], True) if 0 < m < n else []): print(h.hex())
else:
    m, n = int(sys.argv[3]), int(sys.argv[4])
    for h in (path(m, d[:n]) if sys.argv[1] == 'path' else sub(m, d[:n], True) if 0 < m < n else []):
        print(h.hex())
PY
}

@test "known answers: the roots of 0, 1, 2, 3, 4, 5, 7, 8 and 1000 lines" {
	for n in 0 1 2 3 4 5 7 8 1000; do lines $n; done
	# computed once with rfc6962.py (below) and kept as the reference
	run -0 agora-helper merkle-root lines0
	assert_output "0 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	run -0 agora-helper merkle-root lines1
	assert_output "1 34f50f7d0310e8ba2ab2c1efe8d6bd680aeda70b67f6e3cf8fc7f29e4a161ad0"
	run -0 agora-helper merkle-root lines2
	assert_output "2 f28ea81d8c3f38b19c71068c76992a3fd14c3ec47f64d32bcf71865fa545977f"
	run -0 agora-helper merkle-root lines3
	assert_output "3 e8d3e3ae206483e0df450ff2112c9f0aa773aeb01c3ee6e28191fea4eb7b7402"
	run -0 agora-helper merkle-root lines4
	assert_output "4 ac4ca910caf8c22a929e915dec9a7eb6d492bb70a71643fbcdd1d58d15848c49"
	run -0 agora-helper merkle-root lines5
	assert_output "5 937a1e417df10ca066f4369483550e486a8db4d0d1ce79cf556d257d4ae36eea"
	run -0 agora-helper merkle-root lines7
	assert_output "7 7771cee9fa6ff1524141b74c3be67456c5684b89b57b941cb616971640b4466f"
	run -0 agora-helper merkle-root lines8
	assert_output "8 55a6611a239db316e56c95840eb08b421d0c9abc241ea02efe76d62c4f7f0012"
	run -0 agora-helper merkle-root lines1000
	assert_output "1000 eb369d935b724d808bdec86ea99fa2a2b4c7efd2381e59da5d0ee99e67da8d54"
}

@test "interop: an independent Python RFC 6962 gives the same roots" {
	write_py
	for n in 0 1 2 3 4 5 7 8 1000; do
		lines $n
		run -0 python3 rfc6962.py root "lines$n"
		expect=$output
		run -0 agora-helper merkle-root "lines$n"
		assert_output "$expect"
	done
}

@test "the empty tree's root is SHA-256 of nothing" {
	: > empty
	run -0 agora-helper merkle-root empty
	assert_output "0 $(printf '' | openssl dgst -sha256 -r | cut -d' ' -f1)"
}

@test "a leaf is SHA-256 of 0x00 and the line without its newline" {
	lines 3
	run -0 agora-helper merkle-leaf lines3 1
	assert_output "$(printf '\000line 1' | openssl dgst -sha256 -r | cut -d' ' -f1)"
}

@test "a last line without its newline is not a leaf" {
	lines 3
	printf 'torn' >> lines3
	run -0 agora-helper merkle-root lines3
	assert_output "3 e8d3e3ae206483e0df450ff2112c9f0aa773aeb01c3ee6e28191fea4eb7b7402"
}

@test "the root of the first N lines of a longer file" {
	lines 1000
	run -0 agora-helper merkle-root lines1000 7
	assert_output "7 7771cee9fa6ff1524141b74c3be67456c5684b89b57b941cb616971640b4466f"
}

@test "every inclusion and consistency proof up to 20 leaves verifies, none with a flipped hash" {
	run -0 agora-helper merkle-selftest 20
	assert_output "ok 441"
}

@test "interop: inclusion and consistency proofs match the Python RFC 6962 for all m <= n <= 20" {
	write_py
	lines 20
	python3 rfc6962.py all lines20 20 > want
	run -0 agora-helper merkle-proofs lines20 20
	# 210 inclusion proofs and 230 consistency proofs, each named
	assert_equal "$(grep -c '^inclusion ' want)" 210
	assert_equal "$(grep -c '^consistency ' want)" 230
	assert_equal "$output" "$(cat want)"
}

@test "a consistency proof from the command line verifies, and fails with one hash changed" {
	lines 20
	old=$(agora-helper merkle-root lines20 7 | cut -d' ' -f2)
	new=$(agora-helper merkle-root lines20 | cut -d' ' -f2)
	proof=$(agora-helper merkle-consistency lines20 7 20)
	run -0 agora-helper merkle-verify-consistency 7 20 "$old" "$new" $proof
	assert_output ok
	bad=$(echo "$proof" | sed '2s/^./f/; 2s/^ff/0f/')
	[ "$bad" != "$proof" ]
	run -100 --separate-stderr agora-helper merkle-verify-consistency 7 20 "$old" "$new" $bad
	assert_stderr "agora-helper: consistency proof: the root of size 20 does not match"
	run -100 --separate-stderr agora-helper merkle-verify-consistency 7 20 "$new" "$new" $proof
	assert_stderr "agora-helper: consistency proof: the root of size 7 does not match"
}

@test "an inclusion proof verifies, and fails for another leaf, index or root" {
	lines 20
	root=$(agora-helper merkle-root lines20 | cut -d' ' -f2)
	leaf=$(agora-helper merkle-leaf lines20 5)
	other=$(agora-helper merkle-leaf lines20 6)
	proof=$(agora-helper merkle-inclusion lines20 5)
	run -0 agora-helper merkle-verify-inclusion "$leaf" 5 20 "$root" $proof
	assert_output ok
	run -100 --separate-stderr agora-helper merkle-verify-inclusion "$other" 5 20 "$root" $proof
	assert_stderr "agora-helper: inclusion proof: the root does not match"
	run -100 --separate-stderr agora-helper merkle-verify-inclusion "$leaf" 4 20 "$root" $proof
	assert_stderr "agora-helper: inclusion proof: the root does not match"
	run -100 --separate-stderr agora-helper merkle-verify-inclusion "$leaf" 5 20 "$root" $(echo "$proof" | head -n 2)
	assert_stderr "agora-helper: inclusion proof: 2 hashes, too few"
	run -100 --separate-stderr agora-helper merkle-verify-inclusion "$leaf" 20 20 "$root" $proof
	assert_stderr "agora-helper: inclusion proof: leaf 20 is not in a tree of size 20"
}

@test "a consistency proof to a smaller tree is refused" {
	lines 5
	run -100 --separate-stderr agora-helper merkle-consistency lines5 5 3
	assert_stderr "agora-helper: no consistency proof from size 5 to the smaller 3"
}

"""What a version's .wasm is: the compiler's output plus a WebAssembly custom section, `evogit.interface`, naming
the sha256 of the package's tool.json and tests/cases.jsonl.

A version's fingerprint is the sha256 of its .wasm (sandbox.fingerprint), so through this section it covers the
interface callers depend on: a change to the schemas, the description or the cases alone is a new, deterministic
fingerprint — a new version that takes effect (a binary-identical build used to keep the old tag, and the old
schema, in force). Custom sections do not change what runs. Versions built before the section existed keep
their fingerprints and verify and run as before; verification checks a section, where there is one, against the
source tree's files.
"""

from __future__ import annotations

import hashlib

#: What a green build's wasm is beyond the compiler's output (part of the build cache's key).
ARTIFACT_FORMAT = "interface-1"
INTERFACE_SECTION = b"evogit.interface"
INTERFACE_FILES = ("tool.json", "tests/cases.jsonl")


def with_interface(wasm: bytes, files: dict[str, bytes]) -> bytes:
    """`wasm` with the custom section `evogit.interface` appended: one line per interface file, its path and
    sha256 (see the module's docstring). Deterministic; a custom section may come last in a module."""
    return wasm + interface_section(interface_digests(files))


def interface_section(digests: dict[str, str]) -> bytes:
    """The custom section itself, for these digests ({path: sha256})."""
    payload = "".join(f"{path} sha256:{digest}\n" for path, digest in digests.items()).encode()
    body = leb128(len(INTERFACE_SECTION)) + INTERFACE_SECTION + payload
    return b"\x00" + leb128(len(body)) + body


def interface_of(wasm: bytes) -> dict[str, str] | None:
    """The interface digests a version's wasm carries ({path: sha256}), or None for a module without the section
    (built before it, or not a module)."""
    at, found = 8, None  # after the magic and the version
    try:
        while at < len(wasm):
            kind = wasm[at]
            size, at = _read_leb128(wasm, at + 1)
            end = at + size
            if kind == 0:
                length, name_at = _read_leb128(wasm, at)
                if wasm[name_at:name_at + length] == INTERFACE_SECTION:
                    found = wasm[name_at + length:end]
            at = end
    except IndexError:
        return None
    if found is None:
        return None
    out: dict[str, str] = {}
    for line in found.decode("ascii", "replace").splitlines():
        path, _, digest = line.partition(" sha256:")
        if path in INTERFACE_FILES and len(digest) == 64:
            out[path] = digest
    return out


def interface_digests(files: dict[str, bytes]) -> dict[str, str]:
    """What `with_interface` records for a package: {path: sha256} of its interface files."""
    return {path: hashlib.sha256(files.get(path, b"")).hexdigest() for path in INTERFACE_FILES}


def _read_leb128(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80 or shift > 35:
            return value, at


def leb128(n: int) -> bytes:
    """`n` as WebAssembly writes sizes: unsigned LEB128."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)

"""Cost of the JSON depth pre-scan (evogit/jsonio.py) against msgspec decoding the same 4 MB documents,
best of 5 in this process, and of a whole strict decode (size check + pre-scan + msgspec) against Python's
`json.loads`, which has no depth limit of its own and accepts NaN.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evogit import jsonio  # noqa: E402


def documents() -> dict[str, bytes]:
    text = "lorem ipsum [dolor] {sit} \"amet\" \\ consectetur\n"
    level = 127
    block = b"[" * level + b"]" * level
    return {
        "objects (25,000 records with strings, lists, sub-objects)": json.dumps(
            [{"name": f"n{i}", "text": text * 2, "tags": ["a", "b"], "n": i, "sub": {"x": [1, 2, 3]}}
             for i in range(25_000)]).encode(),
        "numbers (140,000 small arrays)": json.dumps([[i, i * 2.5, [i]] for i in range(140_000)]).encode(),
        "text (one 4 MB string with escapes)": json.dumps({"text": text * 85_000}).encode(),
        f"worst case: arrays {level} deep, side by side": b"[" + b",".join([block] * (4_000_000 // len(block))) + b"]",
    }


def best(fn, doc: bytes, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn(doc)
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


def main() -> None:
    print("| document | MB | pre-scan ms | msgspec decode ms | strict decode ms | json.loads ms |")
    print("|---|---|---|---|---|---|")
    for name, doc in documents().items():
        times = [best(fn, doc) for fn in (jsonio.too_deep, msgspec.json.decode, jsonio.decode, json.loads)]
        print(f"| {name} | {len(doc) / 1e6:.1f} | " + " | ".join(f"{t:.1f}" for t in times) + " |")
    deep = b"[" * 100_000 + b"]" * 100_000
    print(f"\n100,000-deep array (0.2 MB): refused in {best(jsonio.too_deep, deep):.2f} ms")


if __name__ == "__main__":
    main()

"""How long `evogit verify` takes per version under each trust policy, on the starter library (24 tools), all in
this one process on the same repository, so a user can choose a policy:

  hash      every check but the rebuild (name, object, tree, wasm hash, interface, build.json, identity, lineage)
  signed    hash + the tag's SSH signature checked against the allowed-signers file (ssh-keygen -Y)
  rebuild   hash + the source commit rebuilt here and compared, build commit for build commit:
              warm: this machine's build cache holds the tree (what a machine that built it pays)
              cold: a fresh build cache (EVOGIT_CACHE_DIR; dependencies compiled once, in the build sandbox)

The library is built with a signing key set up first, so every version tag is a signed tag object. Prints ms per
version and the ratio to `hash`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="evogit-bench-verify-"))
    key = work / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(key)], check=True)
    allowed = work / "allowed_signers"
    allowed.write_text("bench " + " ".join(key.with_suffix(".pub").read_text().split()[:2]) + "\n")
    repo = work / "skills"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    for k, v in (("gpg.format", "ssh"), ("user.signingkey", str(key)), ("gpg.ssh.allowedSignersFile", str(allowed))):
        subprocess.run(["git", "-C", str(repo), "config", k, v], check=True)

    from evogit.runtime import Runtime

    t0 = time.perf_counter()
    rt, outcomes = Runtime.init(repo)
    print(f"starter library: {sum(o.ok for o in outcomes)} of {len(outcomes)} built and signed in "
          f"{time.perf_counter() - t0:.1f} s  ({repo})")

    def per_version(rebuild: bool = False, signed: bool = False) -> tuple[float, int]:
        best = []
        for _ in range(1 if rebuild else 3):
            t = time.perf_counter()
            verdicts = Runtime(repo).verify(None, rebuild, signed)
            best.append((time.perf_counter() - t) * 1000 / len(verdicts))
            assert all(v.ok for v in verdicts), [v.reason for v in verdicts if not v.ok]
        return statistics.median(best), len(verdicts)

    rows = [("hash", *per_version()), ("signed", *per_version(signed=True)),
            ("rebuild (warm cache)", *per_version(rebuild=True))]
    cold = work / "cold-cache"
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "evogit", "--repo", str(repo), "verify", "--rebuild", "--json"],
                          env={**os.environ, "EVOGIT_CACHE_DIR": str(cold)}, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"cold rebuild failed: {done.stderr.decode()[-500:]}")
    rows.append(("rebuild (cold cache)", (time.perf_counter() - t) * 1000 / len(outcomes), len(outcomes)))
    base = rows[0][1]
    print(f"{'policy':<22} {'ms/version':>11} {'x hash':>8}")
    for name, ms, n in rows:
        print(f"{name:<22} {ms:>11.1f} {ms / base:>8.1f}   ({n} versions)")


if __name__ == "__main__":
    main()

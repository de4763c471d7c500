"""How often does a Python process that used the library's `Runtime` die at interpreter exit?

Rounds of 4 processes at once, each creating a `Runtime`, running a tool many times (as a library user
would, in one or several threads), then returning from its script normally (no os._exit). A process
that exits with anything but 0, or prints a panic, counts as an abort.

    scripts/stress_exit.py [--rounds 50] [--runs 200] [--threads 2] [--no-close] [REPO]

With no REPO, a throwaway repository with word-count is made. `--no-close` leaves the runtime to the
interpreter's teardown without calling close() (the atexit hook still runs unless `--no-atexit`).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = """
import sys, threading
sys.path.insert(0, {root!r})
import evogit.runtime as rtmod
from evogit.runtime import Runtime
if {no_atexit}:
    import atexit
    atexit.unregister(rtmod._close_all)
rt = Runtime({repo!r})
def work():
    for i in range({runs}):
        rt.run("word-count", b'{{"text": "the quick brown fox %d"}}' % i)
threads = [threading.Thread(target=work) for _ in range({threads})]
for t in threads: t.start()
for t in threads: t.join()
if {close}:
    rt.close()
"""


def make_repo(tmp: Path) -> Path:
    from evogit.resources import resource
    from evogit.runtime import Runtime

    src = tmp / "starter"
    src.mkdir()
    shutil.copytree(resource("skills-repo") / "word-count", src / "word-count")
    rt, outcomes = Runtime.init(tmp / "skills", starter=src)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    rt.close()
    return tmp / "skills"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("repo", nargs="?")
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-close", action="store_true", help="do not call Runtime.close() before exiting")
    p.add_argument("--no-atexit", action="store_true", help="unregister evogit's exit hook as well")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="evogit-exit."))
    repo = Path(args.repo) if args.repo else make_repo(tmp)
    code = CHILD.format(root=str(ROOT), repo=str(repo), runs=args.runs, threads=args.threads,
                        close=not args.no_close, no_atexit=args.no_atexit)
    endings: collections.Counter[str] = collections.Counter()
    samples: list[str] = []
    for _ in range(args.rounds):
        procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(4)]
        for proc in procs:
            out, err = proc.communicate()
            ending = "ok" if proc.returncode == 0 and b"panick" not in err else f"exit {proc.returncode}"
            endings[ending] += 1
            if ending != "ok" and len(samples) < 3:
                samples.append(err.decode("utf-8", "replace")[-1500:])
    total = sum(endings.values())
    bad = total - endings["ok"]
    print(f"{total} process exits: {bad} aborted ({100 * bad / total:.1f}%): {dict(endings)}")
    for s in samples:
        print("---\n" + s)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Signing with git's own SSH signing: evogit signs what it publishes with the key git signs with, and checks
signatures against the allowed-signers file git checks them against. No scheme of its own.

Configured as git is (`git config`):

    gpg.format ssh
    user.signingkey ~/.ssh/id_ed25519          # the private key file (or its .pub, with the key in ssh-agent)
    gpg.ssh.allowedSignersFile ~/.config/git/allowed_signers   # "<principal> <key type> <public key>" lines

A signature is made and checked by `ssh-keygen -Y sign|find-principals|verify -n git`, exactly what git runs, so
`git verify-commit` accepts every commit evogit signs. libgit2 verifies nothing itself.

**Version tags are signed tag objects** when a key is set up: `object`, `type commit`, `tag tools/<name>/<fp>`,
`tagger` (the user, at the source commit's time), the message, then the SSH signature appended — what `git tag -s`
writes, so `git verify-tag` accepts it (`signed_tag`, `tag_signers`). The build commit it points at stays
unsigned and deterministic, so that a rebuild anywhere writes the very same commit; the tag's signature covers
it by its id. Under the trust policy `signed` (verify.py) a version is taken from a remote only with a tag an
allowed signer signed.

**Writers are principals.** A log ref `refs/evogit/logs/<writer>` is trusted when every commit of it is signed by
a key the allowed-signers file lists for the principal `<writer>`: a writer id is bound to its key, so nobody
else can write under it (`share.signed_writers`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pygit2

from . import proc
from .atomic import write_atomic
from .errors import EvogitError
from .userstate import cache_root

NAMESPACE = "git"  # the namespace git signs commits and tags in
TIMEOUT = 30.0


class SigningFailed(EvogitError):
    """The configured key could not sign (ssh-keygen's reason)."""


def _config(config: pygit2.Config, key: str) -> str | None:
    try:
        value = config[key]
    except KeyError:
        return None
    return str(value).strip() or None


def _ssh_keygen() -> str:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise EvogitError("ssh-keygen is not installed (Debian: openssh-client): it makes and checks signatures")
    return exe


def signing_key(config: pygit2.Config) -> Path | None:
    """The key file git would sign with (`gpg.format ssh` and `user.signingkey`), or None if none is set up."""
    if (_config(config, "gpg.format") or "openpgp").lower() != "ssh":
        return None
    key = _config(config, "user.signingkey")
    if key is None:
        return None
    if key.startswith("key::"):  # a public key given literally, as git allows: its private half is in ssh-agent
        literal = key[len("key::"):].strip()
        if "\n" in literal or not literal:
            raise SigningFailed("user.signingkey key:: holds no single public key")
        path = cache_root() / "signing-keys" / f"{hashlib.sha256(literal.encode()).hexdigest()[:16]}.pub"
        if not path.exists():
            write_atomic(path, (literal + "\n").encode())
        return path
    return Path(os.path.expanduser(key))


def allowed_signers(config: pygit2.Config) -> Path | None:
    """git's allowed-signers file (`gpg.ssh.allowedSignersFile`), or None."""
    path = _config(config, "gpg.ssh.allowedsignersfile")
    return Path(os.path.expanduser(path)) if path else None


def sign(data: bytes, key: Path) -> str:
    """An SSH signature of `data` in git's namespace, armored as git writes it."""
    try:
        done = proc.run([_ssh_keygen(), "-Y", "sign", "-n", NAMESPACE, "-f", str(key)], input=data,
                        timeout=TIMEOUT, max_output=1 << 20, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                                                   **_agent()})
    except OSError as e:
        raise SigningFailed(f"cannot run ssh-keygen: {e.strerror or e}") from None
    if done.returncode != 0 or b"BEGIN SSH SIGNATURE" not in done.stdout:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SigningFailed(f"signing with {key} failed: {said[-1] if said else 'no signature'}")
    return done.stdout.decode()


def _agent() -> dict[str, str]:
    sock = os.environ.get("SSH_AUTH_SOCK")
    return {"SSH_AUTH_SOCK": sock} if sock else {}


def signers(data: bytes, signature: str, allowed: Path) -> list[str]:
    """The principals of `allowed` whose key made `signature` over `data` (empty: none, or no valid signature)."""
    exe = _ssh_keygen()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    with tempfile.NamedTemporaryFile("w", suffix=".sig") as f:
        f.write(signature)
        f.flush()
        found = proc.run([exe, "-Y", "find-principals", "-s", f.name, "-f", str(allowed)], timeout=TIMEOUT,
                         max_output=1 << 20, env=env)
        if found.returncode != 0:
            return []
        out = []
        for principal in found.stdout.decode("utf-8", "replace").split():
            ok = proc.run([exe, "-Y", "verify", "-f", str(allowed), "-I", principal, "-n", NAMESPACE, "-s", f.name],
                          input=data, timeout=TIMEOUT, max_output=1 << 20, env=env)
            if ok.returncode == 0:
                out.append(principal)
        return out


def commit_signers(git: pygit2.Repository, commit: pygit2.Commit, allowed: Path) -> list[str]:
    """The allowed principals who signed a commit (empty if it is unsigned or signed by no allowed key)."""
    signature, payload = commit.gpg_signature
    if not signature:
        return []
    return signers(payload, signature.decode("utf-8", "replace"), allowed)


def create_commit(git: pygit2.Repository, key: Path | None, author: pygit2.Signature, committer: pygit2.Signature,
                  message: str, tree: pygit2.Oid, parents: list[pygit2.Oid | str]) -> pygit2.Oid:
    """A commit, signed with `key` if given (as `git commit -S` signs), unsigned otherwise. No ref is moved."""
    if key is None:
        return git.create_commit(None, author, committer, message, tree, parents)
    content = str(git.create_commit_string(author, committer, message, tree, parents))  # a str (pygit2's stub: Oid)
    return git.create_commit_with_signature(content, sign(content.encode(), key))


SIGNATURE_BEGIN = b"-----BEGIN SSH SIGNATURE-----"


def signed_tag(git: pygit2.Repository, key: Path, target: pygit2.Oid, tag: str, tagger: pygit2.Signature,
               message: str) -> pygit2.Oid:
    """A tag object named `tag` (no refs/tags/) on the commit `target`, signed with `key` as `git tag -s` signs;
    written to the object database, no ref moved."""
    offset = tagger.offset
    zone = f"{'-' if offset < 0 else '+'}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
    name, email = (" ".join(x.replace("<", "").replace(">", "").split()) for x in (tagger.name, tagger.email))
    head = (f"object {target}\ntype commit\ntag {tag}\n"
            f"tagger {name} <{email}> {tagger.time} {zone}\n\n{message.rstrip()}\n").encode()
    return git.odb.write(pygit2.enums.ObjectType.TAG, head + sign(head, key).encode())


def tag_signature(git: pygit2.Repository, oid: pygit2.Oid) -> tuple[bytes, str] | None:
    """A tag object's (signed payload, SSH signature), or None if it carries no SSH signature."""
    kind, data = git.odb.read(oid)
    if kind != pygit2.enums.ObjectType.TAG:
        return None
    at = data.rfind(b"\n" + SIGNATURE_BEGIN)
    if at < 0:
        return None
    return data[:at + 1], data[at + 1:].decode("utf-8", "replace")


def tag_signers(git: pygit2.Repository, oid: pygit2.Oid, allowed: Path) -> list[str]:
    """The allowed principals who signed a tag object (empty if unsigned or signed by no allowed key)."""
    found = tag_signature(git, oid)
    return signers(*found, allowed) if found is not None else []

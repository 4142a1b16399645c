"""Which code produced a run: the git commit of the working directory and whether it had local edits.

A sha alone is not reproducibility when the tree was dirty, so the tracker records both
(``runs.git_sha`` and the ``git.dirty`` tag). No git, or not a repository: ``None``, never an error.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class GitState:
    sha: str
    dirty: bool
    branch: str | None


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def detect_git(cwd: str | Path | None = None) -> GitState | None:
    """The commit checked out in ``cwd`` (default: the current directory), or None outside a repository."""
    where = Path(cwd) if cwd is not None else Path.cwd()
    sha = _git(["rev-parse", "HEAD"], where)
    if not sha or len(sha) != 40:
        return None
    status = _git(["status", "--porcelain", "--untracked-files=no"], where)
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], where)
    return GitState(sha=sha, dirty=bool(status), branch=None if branch in (None, "HEAD") else branch)

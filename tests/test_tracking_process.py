"""What happens around a run: git commit detection and flushing/closing runs at interpreter exit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loopml import Loopml
from loopml.tracking.git import detect_git

GIT = shutil.which("git")


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_run_records_the_git_commit_and_dirty_flag(
    lm_sqlite: Loopml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text("print('v1')\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "v1")
    sha = _git(repo, "rev-parse", "HEAD")
    monkeypatch.chdir(repo)
    with lm_sqlite.tracking.start_run("git") as clean:
        pass
    (repo / "train.py").write_text("print('v2, uncommitted')\n")
    with lm_sqlite.tracking.start_run("git") as dirty:
        pass
    a, b = lm_sqlite.tracking.get_run(clean.id), lm_sqlite.tracking.get_run(dirty.id)
    assert (a.git_sha, a.tags["git.dirty"], a.tags["git.branch"]) == (sha, "false", "main")
    assert (b.git_sha, b.tags["git.dirty"]) == (sha, "true")


def test_outside_a_repository_the_commit_is_unknown(tmp_path: Path) -> None:
    assert detect_git(tmp_path) is None


_SCRIPT = """
import loopml
lm = loopml.connect()
run = lm.tracking.start_run("exit", params={{"mode": "{mode}"}})
for i in range(2500):
    run.log_metric("loss", 1.0 / (i + 1))
print(run.id, flush=True)
{ending}
"""


@pytest.mark.parametrize(
    ("mode", "ending", "status"),
    [("normal", "", "finished"), ("crash", "raise SystemError('boom')", "failed")],
)
def test_interpreter_exit_flushes_points_and_closes_open_runs(
    lm: Loopml, tmp_path: Path, mode: str, ending: str, status: str
) -> None:
    script = tmp_path / f"{mode}.py"
    script.write_text(textwrap.dedent(_SCRIPT.format(mode=mode, ending=ending)))
    env = {
        **os.environ,
        "LOOPML_HOME": str(lm.settings.home_dir),
        "LOOPML_METADATA_URL": lm.settings.resolved_metadata_url,
    }
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode == 0) == (mode == "normal"), done.stderr
    run = lm.tracking.get_run(done.stdout.split()[0])
    assert run.status == status
    assert run.metrics["loss"].count == 2500, "points buffered at exit must be written"
    if mode == "crash":
        assert "SystemError: boom" in (run.error or "")

#!/usr/bin/env python3
"""Set-up in one command: ``python3 dev.py demo`` or ``python3 dev.py test [pytest args]``.

Each creates (or reuses) the virtualenv ``.venv`` beside this file, installs
clicktrail into it, and runs the demo, or the checks and the whole test suite.
"""

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"


def run(*cmd: str) -> None:
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode:
        sys.exit(result.returncode)


def ensure_venv(extra: str) -> None:
    """Create .venv and install the package (again only when pyproject.toml changed)."""
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        try:
            venv.EnvBuilder(with_pip=True).create(VENV)
        except Exception as e:  # noqa: BLE001 - any failure here means the same thing to the user
            sys.exit(f"dev.py: cannot create a virtualenv ({e}); on Debian/Ubuntu: apt-get install python3-venv")
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extra.encode()).hexdigest()
    stamp = VENV / ".clicktrail-installed"
    if stamp.exists() and stamp.read_text() == want:
        return
    print(f"installing clicktrail{extra} into {VENV}", flush=True)
    run(str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", f".{extra}")
    stamp.write_text(want)


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "demo":
        ensure_venv("")
        os.execv(str(BIN / "clicktrail"), [str(BIN / "clicktrail"), "demo", *sys.argv[2:]])
    elif what == "test":
        ensure_venv("[test]")
        run(str(BIN / "ruff"), "check", "clicktrail", "tests", "bench")
        run(str(BIN / "mypy"))
        run(str(BIN / "python"), "-m", "pytest", *sys.argv[2:])
    else:
        sys.exit("usage: python3 dev.py demo | test [pytest arguments]")


if __name__ == "__main__":
    main()

"""The committed podium.v1 modules are what proto/generate.py makes of the .proto files."""

from __future__ import annotations

import filecmp
import pathlib
import subprocess
import sys

from tests.helpers import REPO


def test_generated_code_is_fresh(tmp_path: pathlib.Path) -> None:
    subprocess.run([sys.executable, str(REPO / "proto" / "generate.py"), str(tmp_path)],
                   check=True, capture_output=True)
    fresh = sorted(p.name for p in (tmp_path / "podium" / "v1").iterdir())
    committed_dir = REPO / "proto" / "podium" / "v1"
    committed = sorted(p.name for p in committed_dir.glob("*_pb2*"))
    assert fresh == committed, "run: python proto/generate.py"
    stale = [name for name in fresh
             if not filecmp.cmp(tmp_path / "podium" / "v1" / name, committed_dir / name,
                                shallow=False)]
    assert not stale, f"stale generated code {stale}: run python proto/generate.py"

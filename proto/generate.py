"""Generates podium.v1 from proto/podium/v1/*.proto.

Usage: python proto/generate.py [OUT_DIR]

OUT_DIR defaults to proto/, so the modules land beside their sources in
proto/podium/v1, which is the package podium.v1. The generated files are
committed; tests/test_generated.py regenerates into a temporary directory and
fails when the committed copies differ.
"""

from __future__ import annotations

import pathlib
import sys

from grpc_tools import protoc

PROTO_ROOT = pathlib.Path(__file__).resolve().parent


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    sources = sorted((PROTO_ROOT / "podium" / "v1").glob("*.proto"))
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(s.relative_to(PROTO_ROOT)) for s in sources),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    return sorted((out_dir / "podium" / "v1").glob("*_pb2*.py*"))


if __name__ == "__main__":
    target = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_ROOT
    for path in generate(target):
        print(path)

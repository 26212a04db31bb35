"""Released contracts and the breaking-change check against the last one.

A release freezes the contract as a buf image in ``proto/released/v<VERSION>.json``
(JSON, one field per line, without source info, so a review diff reads). Every later
change to ``proto/`` must stay wire- and source-compatible with the newest of them
(buf's ``FILE`` rules, from ``proto/buf.yaml``)::

    python tools/proto_release.py check                 # buf breaking proto --against <latest baseline>
    python tools/proto_release.py check --proto DIR     # another copy of proto/ (the tests use one)
    python tools/proto_release.py check --error-format json
    python tools/proto_release.py cut 0.2.0             # freeze proto/ as committed at HEAD
    python tools/proto_release.py cut 0.2.0 --ref v0.2.0
    python tools/proto_release.py latest                # the baseline `check` uses

``cut`` builds from the committed tree of a git ref (``git archive``), never from the
working tree, so uncommitted work is not frozen by accident. The buf CLI is the one
``make setup`` installs (``node_modules/.bin/buf``), or ``$BUF``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import tarfile
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROTO = ROOT / "proto"
RELEASED = PROTO / "released"
BASELINE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)\.json$")
VERSION = re.compile(r"^\d+\.\d+\.\d+$")


class ReleaseError(RuntimeError):
    pass


def buf() -> str:
    path = os.environ.get("BUF") or str(ROOT / "node_modules" / ".bin" / "buf")
    if not os.access(path, os.X_OK):
        raise ReleaseError(f"the buf CLI is not installed at {path}: run `make setup`")
    return path


def baselines(directory: pathlib.Path = RELEASED) -> list[pathlib.Path]:
    """Released baselines, oldest first (by version number, not by name)."""
    found = [(tuple(int(p) for p in m.groups()), path)
             for path in directory.glob("v*.json") if (m := BASELINE.match(path.name))]
    return [path for _, path in sorted(found)]


def latest_baseline(directory: pathlib.Path = RELEASED) -> pathlib.Path:
    found = baselines(directory)
    if not found:
        raise ReleaseError(f"no released contract in {directory}")
    return found[-1]


def check(proto: pathlib.Path = PROTO, against: pathlib.Path | None = None, error_format: str = "text") -> int:
    """Run ``buf breaking`` on ``proto`` against a baseline; return buf's exit code."""
    baseline = (against or latest_baseline()).resolve()
    result = subprocess.run(
        [buf(), "breaking", str(proto), "--against", str(baseline), "--error-format", error_format],
        capture_output=True, text=True,
    )
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    name = baseline.name if baseline.parent == RELEASED.resolve() else str(baseline)
    if result.returncode == 0:
        print(f"no breaking change against the released contract {name}")
    else:
        print(f"breaking changes against the released contract {name} (exit {result.returncode})", file=sys.stderr)
    return result.returncode


def build_image(ref: str) -> bytes:
    """The buf image (JSON, no source info, pretty) of ``proto/`` as committed at ``ref``."""
    archive = subprocess.run(["git", "archive", "--format=tar", ref, "proto"], cwd=ROOT, capture_output=True)
    if archive.returncode != 0:
        raise ReleaseError(f"git archive {ref} proto: {archive.stderr.decode(errors='replace').strip()}")
    with tempfile.TemporaryDirectory(prefix="tessera-proto-release-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            # Our own archive; the "data" filter where this Python has it (3.11.4+).
            tar.extractall(tmp, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        out = pathlib.Path(tmp) / "image.json"
        result = subprocess.run(
            [buf(), "build", str(pathlib.Path(tmp) / "proto"), "--exclude-source-info", "-o", str(out)],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise ReleaseError(f"buf build failed:\n{result.stdout}{result.stderr}")
        image = json.loads(out.read_text(encoding="utf-8"))
    return (json.dumps(image, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def commit_of(ref: str) -> str:
    result = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise ReleaseError(f"not a commit: {ref}")
    return result.stdout.strip()


def cut(version: str, ref: str = "HEAD", *, force: bool = False) -> pathlib.Path:
    if not VERSION.match(version):
        raise ReleaseError(f"a version is MAJOR.MINOR.PATCH, got {version!r}")
    target = RELEASED / f"v{version}.json"
    if target.exists() and not force:
        raise ReleaseError(f"{target.relative_to(ROOT)} exists: a released contract is never rewritten (--force to override)")
    commit = commit_of(ref)
    image = build_image(commit)
    RELEASED.mkdir(parents=True, exist_ok=True)
    target.write_bytes(image)
    print(f"wrote {target.relative_to(ROOT)} from proto/ at {commit[:12]} ({ref})")
    print("commit it, and note the version and source commit in proto/released/README.md")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check_parser = commands.add_parser("check", help="buf breaking against the latest released contract")
    check_parser.add_argument("--proto", type=pathlib.Path, default=PROTO, help="the proto/ directory to check")
    check_parser.add_argument("--against", type=pathlib.Path, help="a baseline image (default: the latest)")
    check_parser.add_argument("--error-format", default="text", help="buf's --error-format (text, json, github-actions, ...)")
    cut_parser = commands.add_parser("cut", help="freeze proto/ at a git ref as proto/released/vVERSION.json")
    cut_parser.add_argument("version")
    cut_parser.add_argument("--ref", default="HEAD")
    cut_parser.add_argument("--force", action="store_true")
    commands.add_parser("latest", help="print the latest released contract")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return check(args.proto, args.against, args.error_format)
        if args.command == "cut":
            cut(args.version, args.ref, force=args.force)
            return 0
        print(latest_baseline().relative_to(ROOT))
        return 0
    except ReleaseError as error:
        print(f"proto_release: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

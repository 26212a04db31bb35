"""tools/podman_deploy.py without podman: the mirror debootstrap uses, the podman
configuration it writes, the digests that tag cached images."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tools"))
import podman_deploy  # noqa: E402


def test_the_mirror_is_read_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert podman_deploy.apt_mirror(tmp_path) == "http://mirror.example/debian"


def test_the_mirror_is_read_from_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://other.example/debian bookworm main contrib\n"
    )
    assert podman_deploy.apt_mirror(tmp_path) == "http://other.example/debian"


def test_without_a_bookworm_source_the_mirror_is_debians_own(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://archive.example/ubuntu jammy main\n")
    assert podman_deploy.apt_mirror(tmp_path) == "http://deb.debian.org/debian"


def test_podman_is_configured_for_runc_cgroupfs_and_dns_without_touching_etc(tmp_path: Path) -> None:
    podman = podman_deploy.Podman.configured(tmp_path)
    conf = (tmp_path / "containers.conf").read_text()
    assert 'runtime = "runc"' in conf and 'cgroup_manager = "cgroupfs"' in conf
    assert 'network_backend = "netavark"' in conf  # aardvark-dns: names resolve
    assert f'network_config_dir = "{tmp_path / "networks"}"' in conf
    assert 'default_ulimits = ["nofile=' in conf
    storage = (tmp_path / "storage.conf").read_text()
    assert f'graphroot = "{tmp_path / "storage"}"' in storage
    assert podman.env["CONTAINERS_CONF"] == str(tmp_path / "containers.conf")
    assert podman.env["CONTAINERS_STORAGE_CONF"] == str(tmp_path / "storage.conf")


def test_the_image_tag_follows_the_build_context_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "a.py").write_text("x = 1\n")
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    before = podman_deploy._tree_digest(tmp_path, ["Dockerfile", "services"])
    (tmp_path / "services" / "__pycache__").mkdir()
    (tmp_path / "services" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "notes.txt").write_text("not in the context")
    assert podman_deploy._tree_digest(tmp_path, ["Dockerfile", "services"]) == before
    (tmp_path / "services" / "a.py").write_text("x = 2\n")
    assert podman_deploy._tree_digest(tmp_path, ["Dockerfile", "services"]) != before

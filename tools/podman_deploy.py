"""Podman on this machine, set up for ``make deploy-test``, and the images it runs.

Nothing here touches ``/etc``: podman reads a ``containers.conf`` and a
``storage.conf`` written into a cache directory (``CONTAINERS_CONF``,
``CONTAINERS_STORAGE_CONF``), with what was found to work on Debian's podman 4.3:

- ``runtime = "runc"`` (crun fails on a hybrid cgroup layout) and
  ``cgroup_manager = "cgroupfs"`` (no systemd);
- ``default_ulimits``: no higher than the machine's own limits (raising rlimits is
  refused, and ``kube play`` has no ``--ulimit``);
- the netavark network backend (aardvark-dns: containers resolve each other by name
  and alias) with its network definitions in the cache, not in ``/etc``.

The images, cached in the same storage across runs:

- a Debian bookworm base: ``debootstrap --variant=minbase`` from the mirror apt uses
  here, then ``podman import`` (Docker Hub is out of reach);
- stand-ins for ``python:3.11-slim-bookworm`` and ``postgres:17-bookworm`` on that base
  (``tools/deploy/*.Containerfile``), tagged by a digest of what they are built from;
- Tessera's image from the Dockerfile as written, its ``PYTHON_IMAGE`` build argument
  set to the stand-in, built with ``--network host`` and the host's CA bundle mounted
  (pip's TLS goes through the machine's intercepting proxy), tagged by a digest of its
  build context: an unchanged tree is a cache hit.

``python tools/podman_deploy.py images`` builds (or finds) them all and prints their
references; ``python tools/podman_deploy.py env`` prints the environment for running
``podman`` by hand against the same storage.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = Path(__file__).resolve().parent / "deploy"
SUITE = "bookworm"
IMAGE_PREFIX = "localhost/tessera-deploy"
#: What the Dockerfile's build context holds (.dockerignore admits these and nothing else).
BUILD_CONTEXT = ("Dockerfile", ".dockerignore", "pyproject.toml", "setup.py", "README.md", "core_ext", "tessera",
                 "services", "docker/entrypoint.sh")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: Packages podman needs here, by the command that proves each is installed.
REQUIRED_COMMANDS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap",
                     "/usr/lib/podman/netavark": "netavark", "/usr/lib/podman/aardvark-dns": "aardvark-dns",
                     "catatonit": "catatonit"}


def cache_dir() -> Path:
    """Where the podman storage and the base images live across runs (``TESSERA_DEPLOY_CACHE``)."""
    configured = os.environ.get("TESSERA_DEPLOY_CACHE")
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/cache/tessera/deploy-test")
    return Path.home() / ".cache" / "tessera" / "deploy-test"


def missing_requirements() -> list[str]:
    """The Debian packages podman needs here that are not installed (empty: all there)."""
    missing = []
    for command, package in REQUIRED_COMMANDS.items():
        found = Path(command).exists() if command.startswith("/") else shutil.which(command)
        if not found:
            missing.append(package)
    return missing


def containers_conf(network_dir: Path) -> str:
    import resource

    # 1024 open files and 1000 processes were found to work; never more than this
    # process may have (raising a limit is refused).
    def at_most(limit: int, which: int) -> int:
        soft = resource.getrlimit(which)[0]
        return limit if soft == resource.RLIM_INFINITY else min(limit, soft)

    nofile, nproc = at_most(1024, resource.RLIMIT_NOFILE), at_most(1000, resource.RLIMIT_NPROC)
    return (
        "# Written by tools/podman_deploy.py for make deploy-test.\n"
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        "[network]\n"
        'network_backend = "netavark"\n'
        f'network_config_dir = "{network_dir}"\n'
    )


class PodmanError(RuntimeError):
    """A podman command failed; the message holds its output."""


@dataclass
class Podman:
    """``podman`` with the deploy test's configuration and storage."""

    cache: Path

    @classmethod
    def configured(cls, cache: Path | None = None) -> "Podman":
        cache = cache or cache_dir()
        (cache / "networks").mkdir(parents=True, exist_ok=True)
        run_root = Path("/run/tessera-deploy-test") if os.geteuid() == 0 else cache / "run"
        files = {
            cache / "containers.conf": containers_conf(cache / "networks"),
            cache / "storage.conf": (
                "[storage]\n"
                'driver = "overlay"\n'
                f'graphroot = "{cache / "storage"}"\n'
                f'runroot = "{run_root}"\n'
            ),
        }
        for path, text in files.items():
            if not path.exists() or path.read_text() != text:
                temporary = path.with_suffix(f".{os.getpid()}.tmp")
                temporary.write_text(text)
                temporary.replace(path)
        return cls(cache)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.cache / "containers.conf"),
                "CONTAINERS_STORAGE_CONF": str(self.cache / "storage.conf")}

    def run(self, *args: str, check: bool = True, input: bytes | str | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``podman ARGS``; raises :class:`PodmanError` on failure when ``check``."""
        text_input = input.decode() if isinstance(input, bytes) else input
        result = subprocess.run(["podman", *args], env=self.env, input=text_input, capture_output=True,
                                text=True, timeout=timeout)
        # podman 4.3 prints this on every call where no syslog socket exists.
        result.stderr = "\n".join(line for line in result.stderr.splitlines()
                                  if "failed to connect to syslog" not in line)
        if check and result.returncode != 0:
            raise PodmanError(f"podman {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def out(self, *args: str, **kwargs: object) -> str:
        return self.run(*args, **kwargs).stdout.strip()  # type: ignore[arg-type]

    def image_exists(self, reference: str) -> bool:
        return self.run("image", "exists", reference, check=False).returncode == 0

    def names(self, what: str, prefix: str) -> list[str]:
        """Names of podman objects (``container``, ``pod``, ``volume``, ``network``,
        ``secret``) that start with ``prefix``."""
        listing = {
            "container": ("ps", "--all", "--format", "{{.Names}}"),
            "pod": ("pod", "ps", "--format", "{{.Name}}"),
            "volume": ("volume", "ls", "--format", "{{.Name}}"),
            "network": ("network", "ls", "--format", "{{.Name}}"),
            "secret": ("secret", "ls", "--format", "{{.Name}}"),
        }[what]
        return [name for name in self.out(*listing).split() if name.startswith(prefix)]

    def remove_everything_named(self, prefix: str) -> None:
        """Remove every pod, container, volume, secret and network whose name starts with
        ``prefix`` (a run's own objects), in an order that lets each go: one ``podman``
        call per kind, which removes its objects side by side."""
        removals = (
            ("pod", ("pod", "rm", "--force", "--time", "10")),
            ("container", ("rm", "--force", "--volumes", "--time", "10")),
            ("volume", ("volume", "rm", "--force")),
            ("secret", ("secret", "rm")),
            ("network", ("network", "rm", "--force")),
        )
        for what, command in removals:
            names = self.names(what, prefix)
            if names and self.run(*command, *names, check=False).returncode != 0:
                for name in self.names(what, prefix):  # one that went meanwhile fails the call: one by one
                    self.run(*command, name, check=False)

    def leftovers(self, prefix: str) -> dict[str, list[str]]:
        """What a run named ``prefix`` left behind, by kind (empty lists: nothing)."""
        return {what: self.names(what, prefix) for what in ("pod", "container", "volume", "secret", "network")}


# -- the images ----------------------------------------------------------------------------
def apt_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt uses here for the bookworm suite (one-line sources.list
    entries or deb822 ``.sources`` stanzas); Debian's own when none is configured."""
    sources = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                suites, uris = fields.get("Suites", "").split(), fields.get("URIs", "").split()
                if SUITE in suites and uris and uris[0].rstrip("/").endswith("/debian"):
                    return uris[0]
        else:
            for line in text.splitlines():
                match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s", line.strip() + " ")
                if match and match.group(2) == SUITE and match.group(1).rstrip("/").endswith("/debian"):
                    return match.group(1)
    return "http://deb.debian.org/debian"


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()[:16]


def _tree_digest(root: Path, entries: Sequence[str]) -> str:
    """A digest of the files under ``entries`` (paths relative to ``root``), names and
    contents, skipping what the build never copies (build products, bytecode)."""
    parts: list[bytes] = []
    for entry in entries:
        path = root / entry
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            relative = file.relative_to(root).as_posix()
            if "__pycache__" in relative or file.suffix in (".pyc", ".so", ".c", ".html"):
                continue
            parts += [relative.encode(), file.read_bytes()]
    return _digest(*parts)


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One run at a time prepares the images (others wait, then reuse them)."""
    with open(cache / "images.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class Images:
    base: str
    python: str
    postgres: str
    tessera: str
    #: Seconds each step took in this run (0.0 for a cache hit): the report's evidence.
    seconds: dict[str, float]


def _timed(seconds: dict[str, float], step: str, start: float) -> None:
    seconds[step] = round(time.monotonic() - start, 1)


def ensure_base(podman: Podman, seconds: dict[str, float]) -> str:
    mirror = apt_mirror()
    reference = f"{IMAGE_PREFIX}/debian:{SUITE}-minbase-{_digest(mirror.encode(), b'minbase-v1')}"
    start = time.monotonic()
    if not podman.image_exists(reference):
        with tempfile.TemporaryDirectory(dir=podman.cache, prefix="debootstrap-") as work:
            rootfs = Path(work) / "rootfs"
            result = subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise PodmanError(f"debootstrap failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
            # Packages are downloaded again by whoever installs more: keep the image small.
            for leftover in [*rootfs.glob("var/cache/apt/archives/*.deb"), *rootfs.glob("var/lib/apt/lists/*_*")]:
                leftover.unlink()
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            imported = subprocess.run(["podman", "import", "--change", "CMD=/bin/bash", "-", reference],
                                      stdin=tar.stdout, env=podman.env, capture_output=True, text=True)
            tar.wait()
            if imported.returncode != 0 or tar.returncode != 0:
                raise PodmanError(f"podman import failed:\n{imported.stderr}")
    _timed(seconds, "base", start)
    return reference


#: What each stand-in is built from (its tag is a digest of these and of the base).
STANDINS = {"python": ["python.Containerfile"], "postgres": ["postgres.Containerfile", "postgres-entrypoint.sh"]}


def ensure_standin(podman: Podman, name: str, base: str, seconds: dict[str, float]) -> str:
    """Build ``tools/deploy/<name>.Containerfile`` on ``base`` unless already built."""
    containerfile = DEPLOY / f"{name}.Containerfile"
    reference = f"{IMAGE_PREFIX}/{name}:{_tree_digest(DEPLOY, STANDINS[name])}-{_digest(base.encode())}"
    start = time.monotonic()
    if not podman.image_exists(reference):
        # No CA bundle mounted here: apt speaks plain HTTP to the mirror, and the bundle
        # would be in the way of ca-certificates' own post-installation script.
        podman.run("build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}", "--file",
                   str(containerfile), "--tag", reference, str(DEPLOY), timeout=900)
    _timed(seconds, name, start)
    return reference


def build_tessera(podman: Podman, python_image: str, seconds: dict[str, float]) -> str:
    """Tessera's image from the Dockerfile as written (cached layers make a rebuild quick)."""
    reference = f"{IMAGE_PREFIX}/tessera:{_tree_digest(ROOT, BUILD_CONTEXT)}-{_digest(python_image.encode())}"
    start = time.monotonic()
    if not podman.image_exists(reference):
        podman.run("build", "--network", "host", "--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
                   "--build-arg", f"PYTHON_IMAGE={python_image}", "--file", str(ROOT / "Dockerfile"),
                   "--tag", reference, str(ROOT), timeout=900)
    _timed(seconds, "tessera", start)
    return reference


def prune(podman: Podman, keep_hours: int = 24) -> None:
    """Drop images no tag needs that are older than ``keep_hours`` (old builds of a
    changed tree); younger ones may be another run's build in progress."""
    podman.run("image", "prune", "--force", "--filter", f"until={keep_hours}h", check=False)


def prepare_images(podman: Podman | None = None) -> Images:
    """Find or build the base, the two stand-ins and Tessera's image."""
    podman = podman or Podman.configured()
    seconds: dict[str, float] = {}
    with _locked(podman.cache):  # a second run waits here, then finds everything built
        base = ensure_base(podman, seconds)
        python = ensure_standin(podman, "python", base, seconds)
        postgres = ensure_standin(podman, "postgres", base, seconds)
        tessera = build_tessera(podman, python, seconds)
        prune(podman)
    return Images(base=base, python=python, postgres=postgres, tessera=tessera, seconds=seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("images", "env"))
    args = parser.parse_args(argv)
    podman = Podman.configured()
    if args.what == "env":
        print(f"export CONTAINERS_CONF={podman.cache / 'containers.conf'}")
        print(f"export CONTAINERS_STORAGE_CONF={podman.cache / 'storage.conf'}")
        return 0
    missing = missing_requirements()
    if missing:
        print(f"missing: {' '.join(missing)} (apt-get install them)", file=sys.stderr)
        return 1
    images = prepare_images(podman)
    for name in ("base", "python", "postgres", "tessera"):
        print(f"{name:9} {getattr(images, name)}  ({images.seconds[name]} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Install detectron2 into a Python environment, the way clock_distill's dependency plan says.

detectron2 is not on the package index. Two sources, tried in this order by ``--source auto``:

1. ``upstream``: the official git repository at a pinned commit, built with its C++ extension.
   Used when the repository is reachable (``git ls-remote`` answers).
2. ``pb1``: the index's republication of the v0.6 Python sources, ``pb1-detectron2==0.6``
   (sdist pinned by sha256). That sdist has no C++ sources, so this script builds a
   pure-Python wheel from it, with the compatibility fixes a 2021 release needs today.
   DETRs use none of detectron2's C++ ops.

Every fix is listed in ``PATCHES`` below and each one must match the pinned sdist exactly
(the expected number of replacements per file), so a different sdist fails loudly instead of
being half patched. The wheel gets the local version ``0.6+clockdistill.pure1``; a second run
with that version already installed does nothing.

Usage: ``python tools/install_detectron2.py [--python .venv/bin/python] [--source auto|upstream|pb1]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from pathlib import Path

UPSTREAM_URL = "https://github.com/facebookresearch/detectron2.git"
UPSTREAM_COMMIT = "084acd0f781f217e8d7b93a0099b08fce82cd88f"

SDIST_REQUIREMENT = "pb1-detectron2==0.6"
SDIST_FILENAME = "pb1-detectron2-0.6.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
PURE_VERSION = "0.6+clockdistill.pure1"

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO_ROOT / ".cache" / "detectron2"

# (path inside the sdist, old text, new text, exact number of occurrences in the pinned sdist)
PATCHES: list[tuple[str, str, str, int]] = [
    # Pillow 10 removed Image.LINEAR; it was always an alias of BILINEAR.
    ("detectron2/data/transforms/transform.py", "interp=Image.LINEAR", "interp=Image.BILINEAR", 1),
    # setuptools no longer ships pkg_resources by default; the configs sit beside the module.
    ("detectron2/model_zoo/model_zoo.py", "import pkg_resources\n", "", 1),
    (
        "detectron2/model_zoo/model_zoo.py",
        'cfg_file = pkg_resources.resource_filename(\n        "detectron2.model_zoo", os.path.join("configs", config_path)\n    )',
        'cfg_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", config_path)',
        1,
    ),
    # The rotated NMS op is registered by the C++ extension; route it through the _C stand-in
    # so that calling it gives the same clear error as every other C++ op.
    (
        "detectron2/layers/nms.py",
        "return torch.ops.detectron2.nms_rotated(boxes, scores, iou_threshold)",
        "from detectron2 import _C\n\n    return _C.nms_rotated(boxes, scores, iou_threshold)",
        1,
    ),
]

# numpy 1.24 removed the aliases np.bool/np.int/np.float/np.str/np.object; they meant the builtins.
# `\b` plus the lookahead keeps np.int64, np.bool_, np.float32 etc. untouched.
NUMPY_ALIAS = re.compile(r"\bnp\.(bool|int|float|str|object)\b(?![_\d])")
NUMPY_ALIAS_COUNT = 19  # occurrences in the pinned sdist; checked so a changed sdist fails loudly

C_STUB = '''\
"""Stand-in for detectron2's compiled extension ``detectron2._C``.

This detectron2 is the pure-Python build that clock_distill's ``tools/install_detectron2.py``
makes from ``pb1-detectron2==0.6`` (no C++ sources). Importing this module works, so that
pure-Python parts of detectron2 import normally; calling any C++ op raises
``MissingCppOpError`` naming the op.
"""

FULL_BUILD_HINT = (
    "Install detectron2 with its C++ extension to use it: "
    "`python tools/install_detectron2.py --source upstream` (needs access to github.com and a "
    "C++ compiler), or see https://detectron2.readthedocs.io/en/latest/tutorials/install.html"
)


class MissingCppOpError(RuntimeError):
    """A detectron2 C++ op was called in the pure-Python build."""


def get_compiler_version():
    return "none (pure-Python detectron2 build, no C++ extension)"


def get_cuda_version():
    return "none (pure-Python detectron2 build, no C++ extension)"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    def missing_op(*args, **kwargs):
        raise MissingCppOpError(
            f"detectron2._C.{name} is a C++ op, and this detectron2 ({__name__}) is the "
            f"pure-Python build without C++ ops. {FULL_BUILD_HINT}"
        )

    missing_op.__name__ = name
    return missing_op
'''

WHEEL_SETUP = '''\
from setuptools import find_packages, setup

setup(
    name="detectron2",
    version="{version}",
    description="detectron2 v0.6 Python sources (from pb1-detectron2==0.6), pure-Python build",
    packages=find_packages(include=["detectron2", "detectron2.*"]),
    package_data={{"detectron2.model_zoo": ["configs/*", "configs/**/*"]}},
    python_requires=">=3.8",
)
'''


class InstallError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[install_detectron2] {msg}", flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)


def installed_version(python: str) -> str | None:
    """The installed detectron2 distribution version in ``python``'s environment, or None."""
    code = "import importlib.metadata as m\ntry:\n print(m.version('detectron2'))\nexcept m.PackageNotFoundError:\n pass"
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout
    return out.strip() or None


def source_marker(python: str) -> Path:
    """A file inside the target environment that records where detectron2 came from."""
    prefix = subprocess.run(
        [python, "-c", "import sys; print(sys.prefix)"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return Path(prefix) / "detectron2-source.txt"


def upstream_reachable(timeout: float = 20.0) -> bool:
    if shutil.which("git") is None:
        return False
    try:
        subprocess.run(
            ["git", "ls-remote", "--exit-code", UPSTREAM_URL, "HEAD"],
            check=True,
            capture_output=True,
            timeout=timeout,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except (subprocess.SubprocessError, OSError):
        return False
    return True


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_sdist(python: str, cache: Path) -> Path:
    """Download the pinned sdist into ``cache`` (once) and check its sha256."""
    sdist = cache / SDIST_FILENAME
    if not sdist.exists():
        cache.mkdir(parents=True, exist_ok=True)
        log(f"downloading {SDIST_REQUIREMENT} (sdist) ...")
        # --no-build-isolation: its setup.py imports torch to list C++ extensions; the target
        # environment has torch, a fresh isolated build environment does not.
        run(
            [python, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--no-build-isolation", "-q", "-d", str(cache), SDIST_REQUIREMENT]
        )
    digest = sha256_of(sdist)
    if digest != SDIST_SHA256:
        raise InstallError(
            f"{sdist}: sha256 {digest} does not match the pinned {SDIST_SHA256}. "
            f"Delete the file to download it again; if the index serves a different file, "
            f"the compatibility patches in {__file__} must be re-checked before use."
        )
    return sdist


def apply_patches(src: Path) -> None:
    """Apply PATCHES, the numpy alias fix and the _C stand-in to an extracted sdist at ``src``.

    Raises InstallError naming the file when a patch does not match its pinned count.
    """
    for rel, old, new, expected in PATCHES:
        path = src / rel
        text = path.read_text()
        found = text.count(old)
        if found != expected:
            raise InstallError(f"{path}: patch expects {expected} occurrence(s) of {old!r}, found {found}")
        path.write_text(text.replace(old, new))

    total = 0
    for path in sorted((src / "detectron2").rglob("*.py")):
        text = path.read_text()
        new_text, n = NUMPY_ALIAS.subn(lambda m: m.group(1), text)
        if n:
            path.write_text(new_text)
            total += n
    if total != NUMPY_ALIAS_COUNT:
        raise InstallError(
            f"{src}: expected {NUMPY_ALIAS_COUNT} removed numpy aliases (np.bool, np.int, ...), found {total}"
        )

    stub = src / "detectron2" / "_C.py"
    if any((src / "detectron2").glob("_C*.so")):
        raise InstallError(f"{src}: has a compiled _C; refusing to shadow it with the stand-in")
    stub.write_text(C_STUB)


def build_pure_wheel(sdist: Path, python: str, wheel_dir: Path) -> Path:
    """Build the patched pure-Python wheel from ``sdist`` into ``wheel_dir`` (once)."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    wheel_name = f"detectron2-{PURE_VERSION}-py3-none-any.whl"
    wheel = wheel_dir / wheel_name
    if wheel.exists():
        return wheel
    with tempfile.TemporaryDirectory(prefix="d2-build-") as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        extracted = Path(tmp) / "pb1-detectron2-0.6"
        build = Path(tmp) / "build"
        build.mkdir()
        shutil.copytree(extracted / "detectron2", build / "detectron2")
        shutil.copy(extracted / "LICENSE", build / "LICENSE")
        apply_patches(build)
        (build / "setup.py").write_text(WHEEL_SETUP.format(version=PURE_VERSION))
        log("building the pure-Python detectron2 wheel ...")
        run(
            [python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
             "-w", str(wheel_dir), str(build)]
        )
    if not wheel.exists():
        raise InstallError(f"pip wheel did not produce {wheel}")
    return wheel


def install_pb1(python: str, cache: Path) -> str:
    sdist = fetch_sdist(python, cache)
    wheel = build_pure_wheel(sdist, python, cache / "wheels")
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)])
    return f"{SDIST_REQUIREMENT} sdist (sha256 {SDIST_SHA256}), pure-Python wheel {wheel.name}"


def install_upstream(python: str) -> str:
    log(f"building detectron2 from {UPSTREAM_URL}@{UPSTREAM_COMMIT} (C++ extension; several minutes) ...")
    run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         f"git+{UPSTREAM_URL}@{UPSTREAM_COMMIT}"]
    )
    return f"{UPSTREAM_URL}@{UPSTREAM_COMMIT} (with C++ extension)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter of the target environment")
    parser.add_argument("--source", choices=("auto", "upstream", "pb1"), default="auto")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--force", action="store_true", help="reinstall even if already installed")
    args = parser.parse_args(argv)

    marker = source_marker(args.python)
    current = installed_version(args.python)
    if current and marker.exists() and not args.force:
        recorded = marker.read_text().strip()
        wanted_ok = args.source == "auto" or (args.source == "pb1") == (current == PURE_VERSION)
        if wanted_ok:
            log(f"detectron2 {current} already installed, from {recorded}")
            return 0

    source = args.source
    if source == "auto":
        source = "upstream" if upstream_reachable() else "pb1"
        if source == "pb1":
            log(f"{UPSTREAM_URL} is not reachable; using the {SDIST_REQUIREMENT} fallback")
    try:
        origin = install_upstream(args.python) if source == "upstream" else install_pb1(args.python, args.cache_dir)
    except subprocess.CalledProcessError as e:
        hint = " Try --source pb1 for the pure-Python build." if source == "upstream" else ""
        raise SystemExit(f"[install_detectron2] failed: {' '.join(map(str, e.cmd))} exited {e.returncode}.{hint}")
    marker.write_text(origin + "\n")
    log(f"installed detectron2 {installed_version(args.python)} from {origin}")
    if source == "pb1":
        log(textwrap.fill(
            "This build has no C++ ops (rotated boxes, deformable conv, fast COCOeval); "
            "detectron2._C raises a clear error if one is called. clock_distill needs none of them.",
            width=100, subsequent_indent="    ",
        ))
    return 0


if __name__ == "__main__":
    sys.exit(main())

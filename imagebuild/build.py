"""Build the project image offline: ``build_images(base_image, progress) -> tag``.

Theory of operation. No registry is reachable and nothing inside an image build may use the
network, so everything the image needs is prepared on the host:

1. **Base image.** ``python:3.11-slim`` when the engine already has it; otherwise (never pulling)
   the debootstrap base ``webrtc-dht-base:bookworm``, built here when absent: ``debootstrap
   --variant=minbase bookworm`` from the host's Debian mirror, tarred and imported through the SDK.
   ``images/build-base.sh`` does the same for humans and CI.
2. **Wheels.** ``pip wheel`` on the host (whose pip has the CA bundle and constraints) builds every
   dependency once per ``pyproject.toml`` (cache ``deps-<hash>``) and the project wheel once per
   source tree (cache ``project-<hash>``). Sources are copied to a staging directory first, so the
   build never writes into the working tree.
3. **Context.** A temporary directory with the Dockerfile, ``healthcheck.py`` and the two wheel
   directories, built with ``docker.APIClient().build(..., decode=True)`` on network ``none``;
   every output line goes to ``progress``.
4. **Tags.** ``webrtc-dht:<content-hash>`` (hash of the Dockerfile, healthcheck, wheels and base
   image id) and ``webrtc-dht:latest``. When the content tag already exists the build is skipped.

Every engine or build failure surfaces as one ``LaunchError`` with a clear message.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from supervisor.containers import engine_errors
from supervisor.errors import LaunchError

Progress = Callable[[str], None]

IMAGE_REPOSITORY = "webrtc-dht"
IMAGE_TAG = f"{IMAGE_REPOSITORY}:latest"
DEFAULT_BASE_IMAGE = "python:3.11-slim"
DEBOOTSTRAP_BASE_IMAGE = "webrtc-dht-base:bookworm"
BASE_IMAGE_ENV = "DHT_BASE_IMAGE"
WHEEL_CACHE_ENV = "DHT_WHEEL_CACHE"
DEBIAN_MIRROR_ENV = "DHT_DEBIAN_MIRROR"
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv")
# As in pyproject's packages.find: what the image runs. Not ``imagebuild`` (this package): the
# image does not build images.
PACKAGES = ("node", "peer", "control", "signaling", "supervisor")
PROJECT_FILES = ("pyproject.toml", "README.md")
ENGINE_TIMEOUT_S = 600  # a build step may stay silent for a while (pip install of ~50 MB)
PING_TIMEOUT_S = 5
PIP_TIMEOUT_S = 900.0
DEBOOTSTRAP_TIMEOUT_S = 900.0
KEEP_PROJECT_WHEELS = 4  # project-<hash> cache entries kept (dependency caches are kept)
HASH_CHARS = 16
BUILD_CACHE_TAG = "build-cache"  # webrtc-dht:build-cache keeps the venv stage (layer cache)
HEX = frozenset("0123456789abcdef")
STEP_RE = re.compile(r"^Step \d+/\d+ : FROM ")
LAYER_RE = re.compile(r"^ ---> ([0-9a-f]{12,64})$")
IGNORED_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGES_DIR = REPO_ROOT / "images"


# ---------------------------------------------------------------------------------------------
# Public API


def build_images(base_image: str | None = None, progress: Progress = print) -> str:
    """Build (or reuse) the project image and return its tag (``webrtc-dht:latest``)."""
    started = time.monotonic()
    api = _api_client()
    try:
        base = resolve_base_image(api, base_image, progress)
        deps_dir, project_dir = build_wheels(progress)
        with tempfile.TemporaryDirectory(prefix="dht-image-") as tmp:
            context = Path(tmp)
            stage_context(context, deps_dir, project_dir)
            base_id = _image_id(api, base)
            content = _content_hash(context, base_id)
            content_tag = f"{IMAGE_REPOSITORY}:{content}"
            if _image_id(api, content_tag) is not None:
                progress(f"image {content_tag} is up to date; nothing to build")
            else:
                progress(f"building {content_tag} from {base} ({_dir_size_mb(context):.0f} MB ctx)")
                stage1 = _docker_build(api, context, content_tag, base, progress)
                if stage1 is not None:
                    _retag(api, stage1, BUILD_CACHE_TAG)
            _retag(api, content_tag, "latest")
            _remove_old_builds(api, keep=content)
    finally:
        api.close()
    progress(f"{IMAGE_TAG} ready ({content_tag}) in {time.monotonic() - started:.1f} s")
    return IMAGE_TAG


def resolve_base_image(api: Any, requested: str | None, progress: Progress) -> str:
    """The base image to build FROM; never pulls (no registry is reachable here).

    ``requested`` (else ``$DHT_BASE_IMAGE``, else ``python:3.11-slim``) is used when the engine
    already has it; otherwise the debootstrap base, built first when absent."""
    wanted = requested or os.environ.get(BASE_IMAGE_ENV) or DEFAULT_BASE_IMAGE
    if _image_id(api, wanted) is not None:
        progress(f"base image: {wanted} (present locally)")
        return wanted
    if wanted != DEBOOTSTRAP_BASE_IMAGE:
        progress(
            f"base image {wanted} is not present locally and is never pulled (no registry); "
            f"using the debootstrap base {DEBOOTSTRAP_BASE_IMAGE} instead"
        )
    if _image_id(api, DEBOOTSTRAP_BASE_IMAGE) is None:
        build_base_image(api, DEBOOTSTRAP_BASE_IMAGE, progress)
    else:
        progress(f"base image: {DEBOOTSTRAP_BASE_IMAGE} (present locally)")
    return DEBOOTSTRAP_BASE_IMAGE


def build_base_image(api: Any, tag: str, progress: Progress) -> None:
    """debootstrap a Debian bookworm + Python 3.11 root filesystem and import it as ``tag``."""
    if shutil.which("debootstrap") is None:
        raise LaunchError(
            f"cannot build the base image {tag}: debootstrap is not installed "
            "(apt-get install -y debootstrap), and no other Python base image is present"
        )
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise LaunchError(f"cannot build the base image {tag}: debootstrap needs root")
    mirror = debian_mirror()
    started = time.monotonic()
    progress(f"building base image {tag}: debootstrap {DEBIAN_SUITE} from {mirror} (~40 s)")
    with tempfile.TemporaryDirectory(prefix="dht-base-") as tmp:
        root = Path(tmp) / "rootfs"
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            DEBIAN_SUITE,
            str(root),
            mirror,
        ]
        _run_streaming(cmd, progress, DEBOOTSTRAP_TIMEOUT_S, f"debootstrap of {tag}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc",
                     "usr/share/man", "usr/share/info", "usr/share/locale"):  # fmt: skip
            _empty_dir(root / junk)
        (root / "etc/apt/sources.list").write_text(f"deb {mirror} {DEBIAN_SUITE} main\n")
        repository, _, version = tag.rpartition(":")
        progress(f"importing {tag} into the engine")
        tar = subprocess.Popen(
            ["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
        )
        assert tar.stdout is not None
        try:
            with engine_errors(f"importing the base image {tag}"):
                api.import_image(
                    src=tar.stdout,
                    repository=repository,
                    tag=version,
                    changes=["ENV LANG=C.UTF-8", 'CMD ["python3"]'],
                    stream_src=True,
                )
        finally:
            tar.stdout.close()
            if tar.wait(timeout=60) != 0:
                raise LaunchError(f"importing the base image {tag}: tar failed")
    progress(f"base image {tag} built in {time.monotonic() - started:.0f} s")


def build_wheels(progress: Progress) -> tuple[Path, Path]:
    """``(deps_dir, project_dir)``: cached wheel directories for the current sources."""
    cache = wheel_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    deps_dir = cache / f"deps-{deps_hash()}"
    project_dir = cache / f"project-{source_hash()}"
    with tempfile.TemporaryDirectory(prefix="dht-src-") as tmp:
        src = Path(tmp) / "src"
        if not _has_wheels(deps_dir):
            progress("building dependency wheels on the host (pip wheel, once per pyproject.toml)")
            stage_sources(src)
            _pip_wheel(src, deps_dir, progress, no_deps=False)
            for own in deps_dir.glob("webrtc_dht-*.whl"):
                own.unlink()  # the project wheel is cached separately, keyed by its sources
        if not _has_wheels(project_dir):
            progress("building the webrtc-dht wheel on the host")
            if not src.exists():
                stage_sources(src)
            _pip_wheel(src, project_dir, progress, no_deps=True)
            _prune(cache.glob("project-*"), keep=KEEP_PROJECT_WHEELS, current=project_dir)
        else:
            progress(f"wheels: cached in {cache}")
    return deps_dir, project_dir


def stage_context(context: Path, deps_dir: Path, project_dir: Path) -> None:
    """Fill ``context`` with exactly what the Dockerfile copies."""
    for name in ("Dockerfile", "healthcheck.py"):
        source = IMAGES_DIR / name
        if not source.is_file():
            raise LaunchError(f"{source} is missing: build from a webrtc-dht source checkout")
        shutil.copy2(source, context / name)
    shutil.copytree(deps_dir, context / "wheels" / "deps", copy_function=_link_or_copy)
    shutil.copytree(project_dir, context / "wheels" / "project", copy_function=_link_or_copy)


# ---------------------------------------------------------------------------------------------
# Hashes, caches and sources


def wheel_cache_dir() -> Path:
    explicit = os.environ.get(WHEEL_CACHE_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "webrtc-dht" / "wheels"


def deps_hash() -> str:
    """Dependencies change only with pyproject.toml (and the host interpreter's ABI)."""
    digest = hashlib.sha256()
    digest.update(f"cp{sys.version_info.major}{sys.version_info.minor}\0".encode())
    digest.update((REPO_ROOT / "pyproject.toml").read_bytes())
    return digest.hexdigest()[:HASH_CHARS]


def source_files() -> list[Path]:
    """Every file that goes into the project wheel, relative to the repository root."""
    files = [Path(name) for name in PROJECT_FILES if (REPO_ROOT / name).is_file()]
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*")):
            rel = path.relative_to(REPO_ROOT)
            if path.is_file() and not IGNORED_PARTS & set(rel.parts) and path.suffix != ".pyc":
                files.append(rel)
    return files


def source_hash() -> str:
    digest = hashlib.sha256()
    for rel in source_files():
        digest.update(str(rel).encode() + b"\0")
        digest.update((REPO_ROOT / rel).read_bytes() + b"\0")
    return digest.hexdigest()[:HASH_CHARS]


def stage_sources(dest: Path) -> None:
    for rel in source_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, target)


def debian_mirror() -> str:
    """``$DHT_DEBIAN_MIRROR``, else the first Debian mirror apt is configured with."""
    explicit = os.environ.get(DEBIAN_MIRROR_ENV)
    if explicit:
        return explicit
    candidates: list[str] = []
    sources_d = Path("/etc/apt/sources.list.d")
    for path in sorted(sources_d.glob("*.sources")) if sources_d.is_dir() else []:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("URIs:"):
                candidates.extend(line.split()[1:])
    for path in [Path("/etc/apt/sources.list"), *sorted(sources_d.glob("*.list"))]:
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                words = line.split()
                if words and words[0] == "deb":
                    candidates.extend(w for w in words[1:] if w.startswith(("http:", "https:")))
    for uri in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return uri
    return DEFAULT_DEBIAN_MIRROR


def _content_hash(context: Path, base_id: str | None) -> str:
    digest = hashlib.sha256(f"base={base_id}\0".encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(context)).encode() + b"\0")
        digest.update(path.read_bytes() if path.suffix != ".whl" else path.name.encode())
        if path.suffix == ".whl":
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:HASH_CHARS]


def _has_wheels(directory: Path) -> bool:
    return directory.is_dir() and any(directory.glob("*.whl"))


def _pip_wheel(src: Path, dest: Path, progress: Progress, *, no_deps: bool) -> None:
    """``pip wheel`` into a scratch dir, then rename into place (a cache entry is all or none)."""
    scratch = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "-w", str(scratch), str(src)]
        if no_deps:
            cmd.insert(4, "--no-deps")
        _run_streaming(cmd, progress, PIP_TIMEOUT_S, "pip wheel", keep=_pip_line_worth_showing)
        if dest.exists():
            shutil.rmtree(dest)
        scratch.rename(dest)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)


def _pip_line_worth_showing(line: str) -> bool:
    # pip warns about every configured find-links location it cannot use; that is noise here.
    return "is ignored: it is neither a file nor a directory" not in line


def _prune(entries: Iterable[Path], keep: int, current: Path) -> None:
    ordered = sorted(entries, key=lambda p: p.stat().st_mtime, reverse=True)
    for old in ordered[keep:]:
        if old != current:
            shutil.rmtree(old, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _empty_dir(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def _dir_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _run_streaming(
    cmd: list[str],
    progress: Progress,
    timeout_s: float,
    what: str,
    keep: Callable[[str], bool] = lambda _line: True,
) -> None:
    """Run ``cmd``, forwarding its output lines to ``progress``; LaunchError when it fails."""
    tail: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except OSError as exc:
        raise LaunchError(f"{what}: cannot run {cmd[0]}: {exc}") from exc
    assert proc.stdout is not None
    with proc:
        for raw in proc.stdout:
            line = raw.rstrip()
            if line and keep(line):
                progress(line)
                tail = [*tail[-9:], line]
            if time.monotonic() > deadline:
                proc.kill()
                raise LaunchError(f"{what} took longer than {timeout_s:.0f} s; gave up")
        code = proc.wait()
    if code != 0:
        last = "; ".join(tail[-3:]) or "no output"
        raise LaunchError(f"{what} failed (exit {code}): {last}")


# ---------------------------------------------------------------------------------------------
# Engine access


def _api_client() -> Any:
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:  # pragma: no cover - docker is a declared dependency
        raise LaunchError("the docker Python SDK is not installed") from exc
    try:
        api = docker.from_env(timeout=ENGINE_TIMEOUT_S).api
        api.ping()
    except (DockerException, OSError) as exc:
        raise LaunchError(
            f"the Docker engine is unreachable ({_first_line(exc)}); start dockerd "
            "(images/ci-docker.sh) or use --backend process"
        ) from exc
    return api


def _image_id(api: Any, ref: str) -> str | None:
    from docker.errors import NotFound

    try:
        with engine_errors(f"inspecting image {ref}", NotFound):
            return str(api.inspect_image(ref)["Id"])
    except NotFound:
        return None


def _retag(api: Any, image: str, tag: str) -> None:
    """Point ``webrtc-dht:<tag>`` at ``image``; drop the image it pointed at before, if now
    unreferenced (so rebuilds do not pile up dangling ~200 MB images)."""
    target = f"{IMAGE_REPOSITORY}:{tag}"
    old = _image_id(api, target)
    with engine_errors(f"tagging {target}"):
        api.tag(image, IMAGE_REPOSITORY, tag)
    if old is not None and old != _image_id(api, target):
        _remove_image_quietly(api, old)


def _remove_old_builds(api: Any, keep: str) -> None:
    """Remove ``webrtc-dht:<content-hash>`` tags of earlier builds that no container uses."""
    with engine_errors("listing images"):
        images = api.images(name=IMAGE_REPOSITORY)
    for image in images:
        for ref in image.get("RepoTags") or []:
            tag = ref.rpartition(":")[2]
            if len(tag) == HASH_CHARS and tag != keep and all(c in HEX for c in tag):
                _remove_image_quietly(api, ref)


def _remove_image_quietly(api: Any, ref: str) -> None:
    """Remove ``ref`` unless a container still uses it (then it stays: that is fine)."""
    from docker.errors import APIError

    with contextlib.suppress(APIError), engine_errors(f"removing {ref}", APIError):
        api.remove_image(ref)


def _docker_build(api: Any, context: Path, tag: str, base: str, progress: Progress) -> str | None:
    """Build ``tag``; return the id of the first stage's image (to keep as layer cache)."""
    last: list[str] = []
    last_id: str | None = None
    stage1: str | None = None
    froms = 0
    with engine_errors("building the image"):
        stream: Iterator[dict[str, Any]] = api.build(
            path=str(context),
            tag=tag,
            buildargs={"BASE_IMAGE": base},
            rm=True,
            forcerm=True,
            pull=False,
            network_mode="none",  # the build must not need the network
            decode=True,
            labels={"dht.image": "webrtc-dht"},
        )
        for chunk in stream:
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("errorDetail") or {}
                message = str(chunk.get("error") or detail.get("message") or chunk).strip()
                context_lines = "; ".join(last[-3:])
                raise LaunchError(_explain_build_error(message, context_lines))
            text = chunk.get("stream") or chunk.get("status")
            if isinstance(text, str):
                for line in text.splitlines():
                    if not line.strip():
                        continue
                    progress(line.rstrip())
                    last = [*last[-9:], line.strip()]
                    step = STEP_RE.match(line)
                    if step is not None:
                        froms += 1
                        if froms == 2:
                            stage1 = last_id
                    layer = LAYER_RE.match(line)
                    if layer is not None:
                        last_id = layer.group(1)
    return stage1


def _explain_build_error(message: str, context_lines: str) -> str:
    lowered = message.lower()
    if "no space left on device" in lowered:
        return f"image build failed: the Docker engine is out of disk space ({message})"
    where = f" after: {context_lines}" if context_lines else ""
    return f"image build failed: {message}{where}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def main() -> int:
    """``python -m imagebuild [BASE_IMAGE]`` builds the image (used by CI scripts)."""
    base = sys.argv[1] if len(sys.argv) > 1 else None
    try:
        tag = build_images(base, progress=lambda line: print(line, flush=True))
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(tag)
    return 0

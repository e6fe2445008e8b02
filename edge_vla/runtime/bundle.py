"""The model bundle: a folder with ``manifest.json``, ONNX files and tokenizer data.

Loading verifies every file the manifest lists (size and sha256) and refuses a
bundle that does not match, naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class BundleError(Exception):
    """A bundle that cannot be used; the message says which file and why."""


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = FORMAT_VERSION
    name: str = Field(min_length=1)
    family: str = Field(min_length=1, description="runtime family that knows these graphs")
    files: dict[str, FileEntry]
    inputs: dict[str, Any] = Field(description="input shapes and limits, e.g. image_size")
    tokenizer: dict[str, Any]
    action_vocab: dict[str, Any]
    precision: str = "fp32"
    kv_cache: str = "none"
    provenance: dict[str, Any] = Field(default_factory=dict)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: Path) -> FileEntry:
    return FileEntry(sha256=sha256_file(path), size=path.stat().st_size)


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    out = folder / MANIFEST
    out.write_text(manifest.model_dump_json(indent=2) + "\n")
    return out


class Bundle:
    """A verified bundle: ``Bundle.load(path)`` or BundleError."""

    def __init__(self, path: Path, manifest: Manifest):
        self.path = path
        self.manifest = manifest

    def file(self, name: str) -> Path:
        if name not in self.manifest.files:
            raise BundleError(f"bundle {self.path}: manifest lists no file {name!r}")
        return self.path / name

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> "Bundle":
        folder = Path(path)
        if not folder.is_dir():
            raise BundleError(f"model bundle {folder}: not a folder")
        mpath = folder / MANIFEST
        try:
            raw = json.loads(mpath.read_text())
        except FileNotFoundError:
            raise BundleError(f"model bundle {folder}: no {MANIFEST}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"model bundle {folder}: {MANIFEST} is not valid JSON: {exc}") from None
        try:
            manifest = Manifest.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise BundleError(f"model bundle {folder}: {MANIFEST} {where}: {err['msg']}") from None
        if manifest.format_version != FORMAT_VERSION:
            raise BundleError(f"model bundle {folder}: format_version {manifest.format_version}, "
                              f"this edge-vla reads {FORMAT_VERSION}")
        if verify:
            for name, entry in manifest.files.items():
                _verify_file(folder, name, entry)
        return cls(folder, manifest)


def _verify_file(folder: Path, name: str, entry: FileEntry) -> None:
    target = (folder / name).resolve()
    if folder.resolve() not in target.parents:
        raise BundleError(f"model bundle {folder}: file {name!r} points outside the bundle")
    if not target.is_file():
        raise BundleError(f"model bundle {folder}: {name} is missing")
    size = target.stat().st_size
    if size != entry.size:
        raise BundleError(f"model bundle {folder}: {name} is {size} bytes, manifest says {entry.size}")
    digest = sha256_file(target)
    if digest != entry.sha256:
        raise BundleError(f"model bundle {folder}: {name} sha256 {digest[:12]}... does not match "
                          f"the manifest ({entry.sha256[:12]}...): corrupted or replaced")

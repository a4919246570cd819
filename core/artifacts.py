"""The artifact store: snapshots and checkpoints under keys, on the local disk or in S3.

A key is a relative POSIX path, ``snapshots/3/7/data.jsonl`` or ``runs/12/checkpoint-000040``;
rows store keys, never a path of one machine. Two backends:

- the local file system under ``ARTIFACT_ROOT`` (the default);
- S3-compatible object storage, ``ARTIFACT_STORAGE_URL=s3://bucket/prefix``, through s3fs
  (docs/deploy.md says why), with the endpoint and credentials from the environment.

Workers never hand the engine anything but plain local files. ``stage`` gives a local path for a
key: the store's own file on the local backend, or a copy in the local cache
(``PREFLAB_CACHE_DIR``) for S3, downloaded once per content and reused by later jobs. What a
worker writes goes to ``work_dir(key)`` and is published with ``publish``: on the local backend
that directory already is the artifact (publishing it is a no-op, or a rename), on S3 its files
are uploaded.

Immutable publishes refuse an existing key: a local target that exists, or an S3 object that
exists (a conditional ``If-None-Match: *`` PUT, so two writers cannot both win).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, cast

from django.conf import settings

# Reads of an S3 object go out as ranged GETs of this many bytes (and one is kept in memory).
S3_READ_BLOCK = 8 << 20


class ArtifactKeyError(ValueError):
    """Not a key: absolute, empty, or climbing out of the store with '..'."""


def check_key(key: str) -> str:
    """Return key, or raise ArtifactKeyError when it is not a clean relative POSIX path."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in {"", ".", ".."} for p in parts):
        raise ArtifactKeyError(f"{key!r} is not an artifact key (a relative path like runs/1).")
    return key


def is_key(path: str) -> bool:
    try:
        check_key(path)
    except ArtifactKeyError:
        return False
    return True


class ArtifactStore(ABC):
    """Files and directories under keys. Every method takes keys, never store paths."""

    #: True when the store's files are this machine's files (no staging, no upload).
    is_local: bool

    @property
    @abstractmethod
    def url(self) -> str:
        """Where the store lives, for logs and cache keys: file:///… or s3://…"""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """A file, or a directory (a prefix) holding at least one file."""

    @abstractmethod
    def size(self, key: str) -> int:
        """A file's size in bytes; FileNotFoundError when there is none."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A seekable binary reader; reads stream (nothing is loaded whole)."""

    @abstractmethod
    def local_path(self, key: str) -> Path | None:
        """The artifact's path on this machine when the store is local, else None."""

    @abstractmethod
    def work_dir(self, key: str) -> Path:
        """Where a worker writes files that it will publish under key (local: the artifact
        itself, so publishing is free; S3: under PREFLAB_WORK_DIR)."""

    @abstractmethod
    def publish(self, source: Path, key: str, *, immutable: bool, move: bool = False) -> None:
        """Put a local file or directory under key.

        immutable: refuse (FileExistsError) when something is there already; otherwise it is
        replaced. move: the source may be consumed (a rename where the store is local).
        """

    @abstractmethod
    def fetch(self, key: str, dest: Path) -> None:
        """Copy the file or directory under key to dest, which must not exist."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the file or directory under key; nothing there is fine."""

    @abstractmethod
    def fingerprint(self, key: str) -> str:
        """A digest of what is under key (names, sizes, versions); FileNotFoundError if none."""

    def download_url(
        self, key: str, *, filename: str, content_type: str, expires: int
    ) -> str | None:
        """A time-limited URL a client can fetch the file from directly, or None."""
        return None


class LocalArtifactStore(ArtifactStore):
    is_local = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def url(self) -> str:
        return self.root.resolve().as_uri()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def exists(self, key: str) -> bool:
        path = self._path(key)
        return path.is_file() or (path.is_dir() and any(p.is_file() for p in path.rglob("*")))

    def size(self, key: str) -> int:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"No artifact file {key}")
        return path.stat().st_size

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def work_dir(self, key: str) -> Path:
        return self._path(key)

    def publish(self, source: Path, key: str, *, immutable: bool, move: bool = False) -> None:
        target = self._path(key)
        if source.resolve() == target.resolve():
            return
        if target.exists():
            if immutable:
                raise FileExistsError(f"Artifact {key} exists and is immutable")
            _remove(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        if move:
            try:
                os.replace(source, target)
                return
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
        _copy(source, target)
        if move:
            _remove(source)

    def fetch(self, key: str, dest: Path) -> None:
        source = self._path(key)
        if not source.exists():
            raise FileNotFoundError(f"No artifact {key}")
        _copy(source, dest)

    def delete(self, key: str) -> None:
        _remove(self._path(key))

    def fingerprint(self, key: str) -> str:
        path = self._path(key)
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        if not files:
            raise FileNotFoundError(f"No artifact {key}")
        entries = []
        for file in files:
            stat = file.stat()
            entries.append(
                f"{file.relative_to(path).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}"
            )
        return _digest(self.url, key, entries)


class S3ArtifactStore(ArtifactStore):
    is_local = False

    def __init__(self, fs: Any, root: str, work_root: Path) -> None:
        self.fs = fs
        self.root = root.strip("/")  # "bucket/prefix"
        self.work_root = Path(work_root)

    @property
    def url(self) -> str:
        return f"s3://{self.root}"

    def _path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def _files(self, key: str) -> dict[str, dict[str, Any]]:
        """{path relative to key: object info} of the file or the files below key."""
        path = self._path(key)
        found = cast(dict[str, dict[str, Any]], self.fs.find(path, detail=True))
        files: dict[str, dict[str, Any]] = {}
        for name, info in found.items():
            if info.get("type") != "file":
                continue
            if name == path:
                files[""] = info
            elif name.startswith(path + "/"):
                files[name[len(path) + 1 :]] = info
        return files

    def exists(self, key: str) -> bool:
        return bool(self._files(key))

    def size(self, key: str) -> int:
        info = self.fs.info(self._path(key))
        if info.get("type") != "file":
            raise FileNotFoundError(f"No artifact file {key}")
        return int(info["size"])

    def open(self, key: str) -> BinaryIO:
        return cast(
            BinaryIO,
            self.fs.open(self._path(key), "rb", block_size=S3_READ_BLOCK, cache_type="readahead"),
        )

    def local_path(self, key: str) -> None:
        return None

    def work_dir(self, key: str) -> Path:
        return self.work_root / check_key(key)

    def publish(self, source: Path, key: str, *, immutable: bool, move: bool = False) -> None:
        path = self._path(key)
        if source.is_dir():
            local = sorted(p for p in source.rglob("*") if p.is_file())
            remote = [f"{path}/{p.relative_to(source).as_posix()}" for p in local]
        else:
            local, remote = [source], [path]
        if not immutable:
            stale = set(self._files(key)) - {r[len(path) + 1 :] for r in remote} - {""}
            if stale:
                self.fs.rm([f"{path}/{name}" for name in sorted(stale)])
        # Several files go up concurrently; "create" is a conditional PUT (If-None-Match: *),
        # which the server refuses (FileExistsError) when the key exists.
        self.fs.put([str(p) for p in local], remote, mode="create" if immutable else "overwrite")
        if move:
            _remove(source)

    def fetch(self, key: str, dest: Path) -> None:
        files = self._files(key)
        if not files:
            raise FileNotFoundError(f"No artifact {key}")
        path = self._path(key)
        if "" in files:  # key is a file
            dest.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(path, str(dest))
            return
        names = sorted(files)
        dest.mkdir(parents=True)
        self.fs.get([f"{path}/{n}" for n in names], [str(dest / n) for n in names])

    def delete(self, key: str) -> None:
        names = self._files(key)
        if not names:
            return
        path = self._path(key)
        self.fs.rm([path if n == "" else f"{path}/{n}" for n in sorted(names)])

    def fingerprint(self, key: str) -> str:
        files = self._files(key)
        if not files:
            raise FileNotFoundError(f"No artifact {key}")
        entries = [
            f"{name}\0{info.get('size')}\0{info.get('ETag') or info.get('LastModified')}"
            for name, info in sorted(files.items())
        ]
        return _digest(self.url, key, entries)

    def download_url(
        self, key: str, *, filename: str, content_type: str, expires: int
    ) -> str | None:
        return cast(
            str,
            self.fs.sign(
                self._path(key),
                expiration=expires,
                ResponseContentDisposition=f'attachment; filename="{filename}"',
                ResponseContentType=content_type,
            ),
        )


def _digest(url: str, key: str, entries: list[str]) -> str:
    digest = hashlib.sha256(f"{url}\0{key}\n".encode())
    for entry in entries:
        digest.update(entry.encode() + b"\n")
    return digest.hexdigest()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


@dataclass(frozen=True)
class StoreSettings:
    storage_url: str
    root: Path
    work_dir: Path
    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str

    @classmethod
    def current(cls) -> StoreSettings:
        return cls(
            storage_url=settings.ARTIFACT_STORAGE_URL,
            root=Path(settings.ARTIFACT_ROOT),
            work_dir=Path(settings.PREFLAB_WORK_DIR),
            endpoint_url=settings.PREFLAB_S3_ENDPOINT_URL,
            region=settings.PREFLAB_S3_REGION,
            access_key_id=settings.PREFLAB_S3_ACCESS_KEY_ID,
            secret_access_key=settings.PREFLAB_S3_SECRET_ACCESS_KEY,
        )


def get_store() -> ArtifactStore:
    """The store the settings describe (one instance per settings and process)."""
    return _store(StoreSettings.current(), os.getpid())


@functools.lru_cache(maxsize=8)
def _store(config: StoreSettings, pid: int) -> ArtifactStore:
    # pid is part of the cache key: a forked worker child must not reuse its parent's S3
    # client, whose connections and event loop belong to the parent.
    url = config.storage_url.strip()
    if not url:
        return LocalArtifactStore(config.root)
    if not url.startswith("s3://") or not url[5:].strip("/"):
        raise ValueError(f"ARTIFACT_STORAGE_URL={url!r}: use s3://bucket/prefix, or leave it unset")
    import s3fs

    client_kwargs = {"region_name": config.region} if config.region else {}
    fs = s3fs.S3FileSystem(
        # None: botocore's own chain (AWS_ACCESS_KEY_ID…, ~/.aws, an instance role).
        key=config.access_key_id or None,
        secret=config.secret_access_key or None,
        endpoint_url=config.endpoint_url or None,
        client_kwargs=client_kwargs,
        config_kwargs={"signature_version": "s3v4"},
        # Listings are never cached: other machines write the same bucket.
        use_listings_cache=False,
        skip_instance_cache=True,
    )
    return S3ArtifactStore(fs, url[5:], config.work_dir)


def stage(key: str) -> Path:
    """A local path holding the artifact under key, for the engine to read as plain files.

    Local store: the artifact itself (no copy). S3: a copy in PREFLAB_CACHE_DIR, in a directory
    named by the store, the key and the listing's sizes and versions, so a second job reuses
    it and a changed artifact is fetched again. Concurrent stagers each download into their
    own temporary directory and rename it into place; the first rename wins, the others use it.
    """
    store = get_store()
    local = store.local_path(key)
    if local is not None:
        if not local.exists():
            raise FileNotFoundError(f"No artifact {key} under {store.url}")
        return local
    digest = store.fingerprint(key)
    cache = Path(settings.PREFLAB_CACHE_DIR)
    entry = cache / digest
    staged = entry / PurePosixPath(key).name
    if staged.exists():
        os.utime(entry)  # the entry's mtime says when it was last used
        return staged
    cache.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}-", suffix=".tmp", dir=cache))
    try:
        store.fetch(key, temp / staged.name)
        for path in [temp / staged.name, *(temp / staged.name).rglob("*")]:
            if path.is_file():
                path.chmod(0o444)
        try:
            os.rename(temp, entry)
        except OSError as exc:
            if exc.errno not in {errno.EEXIST, errno.ENOTEMPTY} or not staged.exists():
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return staged

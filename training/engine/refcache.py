"""The reference log-prob cache, shared across runs.

Reference log-probs depend only on the data, the reference weights, the tokenisation and the
precision they were computed in, so a second run on the same snapshot and reference loads them
instead of running the reference model at all. An entry is one file,
``<reference_cache_dir>/reference-<key>.safetensors`` holding ``logps``, a ``[rows, 2]`` float32
tensor (chosen, rejected per row of the data file), where ``key`` is the SHA-256 (first 40 hex
digits) of a JSON document of:

- ``format``: the layout of this cache;
- ``data_sha256`` and ``rows``: the data file's bytes and its number of valid rows;
- ``reference``: the reference model's content fingerprint (:func:`model_fingerprint`);
- ``tokenizer_sha256``: the tokenizer's full serialisation, special tokens and chat template
  (:func:`tokenizer_fingerprint`);
- ``tokenization``: the length and truncation settings and the other settings the token ids
  depend on (``Tokenization.settings``);
- ``precision``: ``fp32`` or ``bf16`` (bf16 autocast gives other numbers).

The directory is worker-managed: the service passes a directory that its artifact store keeps
across runs; a user-supplied run config cannot name it. Entries are written to a temporary
name and renamed, so a reader never sees a half-written file and concurrent writers of the same
key write the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

CACHE_FORMAT = 2
FINGERPRINTS_FILE = "model-fingerprints.json"
# the files whose bytes are the model: weights and configs (tokenizers are keyed separately)
MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".bin", ".model", ".py")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def model_fingerprint(path: str, memo_dir: Path | None = None) -> dict[str, Any]:
    """What identifies a model's weights by content.

    A local directory: the SHA-256 of each weight and config file. Hashing a large checkpoint
    takes seconds per GB, so the digests are memoised in ``memo_dir/model-fingerprints.json``
    under the file's resolved path, size and modification time: a later run hashes nothing
    unless a file changed. A hub id is identified by its id only (the engine cannot see the
    revision it will download without downloading it); the worker always passes local paths.
    """
    root = Path(path)
    if not root.is_dir():
        return {"hub_id": path}
    memo_file = memo_dir / FINGERPRINTS_FILE if memo_dir is not None else None
    memo: dict[str, str] = {}
    if memo_file is not None and memo_file.is_file():
        try:
            memo = json.loads(memo_file.read_text())
        except (OSError, ValueError):
            memo = {}  # a damaged memo only costs a rehash
    files = []
    changed = False
    for f in sorted(root.rglob("*")):
        if not f.is_file() or f.suffix not in MODEL_FILE_SUFFIXES:
            continue
        if f.name.startswith("tokenizer") or f.name in {"special_tokens_map.json", "vocab.json"}:
            continue  # the tokenizer has its own fingerprint
        stat = f.stat()
        memo_key = f"{f.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        digest = memo.get(memo_key)
        if digest is None:
            digest = _file_sha256(f)
            memo[memo_key] = digest
            changed = True
        files.append([str(f.relative_to(root)), digest])
    if not files:
        raise ValueError(f"{path}: no model files (*.safetensors, config.json) in the directory")
    if changed and memo_file is not None:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_file.with_name(f".{memo_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, indent=0, sort_keys=True))
        tmp.replace(memo_file)
    return {"files": files}


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 of everything the token ids depend on in the tokenizer itself: the fast
    tokenizer's full serialisation (vocabulary, merges, normaliser, pre-tokeniser, post-processor,
    added tokens) or, for a slow one, its vocabulary; the special tokens; the chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        body = backend.to_str()
    else:
        body = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    material = {
        "tokenizer": body,
        "special_tokens": {
            str(k): str(v) for k, v in sorted(getattr(tokenizer, "special_tokens_map", {}).items())
        },
        "chat_template": getattr(tokenizer, "chat_template", None),
        "class": type(tokenizer).__name__,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def cache_key(
    *,
    data_sha256: str,
    rows: int,
    reference: dict[str, Any],
    tokenizer_sha256: str,
    tokenization: dict[str, Any],
    precision: str,
) -> str:
    """The cache key (40 hex digits); the arguments are described in the module docstring."""
    material = {
        "format": CACHE_FORMAT,
        "data_sha256": data_sha256,
        "rows": rows,
        "reference": reference,
        "tokenizer_sha256": tokenizer_sha256,
        "tokenization": tokenization,
        "precision": precision,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:40]


class ReferenceCache:
    """Entries ``reference-<key>.safetensors`` in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, key: str) -> Path:
        return self.directory / f"reference-{key}.safetensors"

    def load(self, key: str, rows: int) -> torch.Tensor | None:
        """The ``[rows, 2]`` log-probs stored under ``key``, or None (absent or unusable)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            logps = load_file(str(path))["logps"]
        except Exception:  # a damaged entry is a miss, recomputed and overwritten
            logger.warning("ignoring an unreadable reference cache entry %s", path, exc_info=True)
            return None
        if logps.shape != (rows, 2) or logps.dtype != torch.float32:
            logger.warning("ignoring reference cache entry %s of shape %s", path, logps.shape)
            return None
        return logps

    def store(self, key: str, logps: torch.Tensor) -> Path:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"logps": logps.contiguous()}, str(tmp), metadata={"key": key})
        tmp.replace(path)
        return path

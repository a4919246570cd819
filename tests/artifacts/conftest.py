"""A real S3 API server for the artifact store tests: moto's server mode, in its own process.

`s3_server` starts it once per session on a free loopback port; `s3` gives each test its own
bucket (created with boto3, as an operator would) and points the settings of this process, the
web side, at it. Each side gets its own local directories, so nothing can pass between web and
worker through a shared disk.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"moto server did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@dataclass
class S3:
    endpoint: str
    bucket: str
    prefix: str
    client: Any  # a boto3 S3 client, to look at the bucket from outside PrefLab

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def objects(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix + "/")
        return sorted(item["Key"][len(self.prefix) + 1 :] for item in listing.get("Contents", []))

    def env(self, home: Path) -> dict[str, str]:
        """The environment of a process on another machine: same bucket, its own disk."""
        return {
            "ARTIFACT_STORAGE_URL": self.url,
            "PREFLAB_S3_ENDPOINT_URL": self.endpoint,
            "PREFLAB_S3_REGION": REGION,
            "PREFLAB_S3_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "PREFLAB_S3_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
            "PREFLAB_VAR_DIR": str(home / "var"),
            "ARTIFACT_ROOT": str(home / "artifacts"),
            "PREFLAB_CACHE_DIR": str(home / "cache"),
            "PREFLAB_WORK_DIR": str(home / "work"),
        }


@pytest.fixture
def s3(s3_server: str, settings: Any, tmp_path: Path) -> S3:
    import boto3

    bucket = f"preflab-{uuid.uuid4().hex[:16]}"
    client = boto3.client("s3", endpoint_url=s3_server, region_name=REGION, **CREDENTIALS)
    client.create_bucket(Bucket=bucket)
    store = S3(s3_server, bucket, "artifacts", client)
    settings.ARTIFACT_STORAGE_URL = store.url
    settings.PREFLAB_S3_ENDPOINT_URL = s3_server
    settings.PREFLAB_S3_REGION = REGION
    settings.PREFLAB_S3_ACCESS_KEY_ID = CREDENTIALS["aws_access_key_id"]
    settings.PREFLAB_S3_SECRET_ACCESS_KEY = CREDENTIALS["aws_secret_access_key"]
    web = tmp_path / "web"
    settings.ARTIFACT_ROOT = web / "artifacts"
    settings.PREFLAB_CACHE_DIR = web / "cache"
    settings.PREFLAB_WORK_DIR = web / "work"
    return store

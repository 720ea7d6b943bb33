"""Downloads resume and verify, and an interrupted stage leaves nothing a later stage would read as complete.
A real HTTP server on 127.0.0.1 that honours Range requests and can cut a response short."""

import hashlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from datamodules.files import DataError, download
from tests.helpers import ROOT

PAYLOAD = os.urandom(300_000)
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class Server(http.server.ThreadingHTTPServer):
    cut_after: int | None = None  # bytes sent before the next response's connection is dropped
    honour_range = True
    ranges: list[str | None]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server: Server = self.server
        server.ranges.append(self.headers.get("Range"))
        start = (
            int(self.headers["Range"].split("=")[1].rstrip("-"))
            if self.headers.get("Range") and server.honour_range
            else 0
        )
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(PAYLOAD) - start))
        self.end_headers()
        body = PAYLOAD[start:]
        if server.cut_after is not None:
            body, server.cut_after = body[: server.cut_after], None
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.ranges = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def url(server: Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/archive.tar"


def test_an_interrupted_download_keeps_its_part_and_the_next_run_resumes_it(server, tmp_path):
    server.cut_after = 100_000
    dest = tmp_path / "archive.tar"
    with pytest.raises(
        DataError,
        match=r"download failed after 100000 bytes .*archive\.tar\.part is kept and the next run resumes it",
    ):
        download(url(server), dest, MD5)
    assert (tmp_path / "archive.tar.part").stat().st_size == 100_000 and not dest.exists()

    assert download(url(server), dest, MD5).read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=100000-"]  # only the missing bytes were fetched
    assert not (tmp_path / "archive.tar.part").exists()


def test_a_server_that_ignores_range_is_downloaded_from_the_start(server, tmp_path):
    (tmp_path / "archive.tar.part").write_bytes(PAYLOAD[:5000])
    server.honour_range = False
    assert download(url(server), tmp_path / "archive.tar", MD5).read_bytes() == PAYLOAD


def test_a_checksum_mismatch_deletes_the_partial_file_and_says_so(server, tmp_path):
    dest = tmp_path / "archive.tar"
    with pytest.raises(DataError, match=f"checksum mismatch .*expected {'0' * 32}.*partial file was deleted"):
        download(url(server), dest, "0" * 32)
    assert not dest.exists() and not (tmp_path / "archive.tar.part").exists()


def test_a_complete_file_with_the_right_checksum_is_not_fetched_again(server, tmp_path):
    (tmp_path / "archive.tar").write_bytes(PAYLOAD)
    download(url(server), tmp_path / "archive.tar", MD5)
    assert server.ranges == []


@pytest.mark.slow
def test_a_shard_stage_killed_midway_leaves_the_previous_shards_whole(omniglot_project, tmp_path):
    """SIGKILL while `reprozoo shard` writes: data/shards/<name> is still the previous, complete output."""
    import shutil

    project = tmp_path / "project"
    shutil.copytree(omniglot_project, project, ignore=shutil.ignore_patterns("mlflow.db", "models"))
    shards = project / "data/shards/omniglot"
    before = {p.name: p.read_bytes() for p in shards.iterdir()}
    (project / "data/shards/omniglot.partial").mkdir()  # a scratch folder an earlier kill left
    shard = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "shard", "omniglot"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    scratch = project / "data/shards/omniglot.partial"
    deadline = time.monotonic() + 120
    while not any(scratch.glob("*.tar")) and shard.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert shard.poll() is None, "the shard stage finished before it could be killed"
    shard.send_signal(signal.SIGKILL)
    shard.wait()
    assert {p.name: p.read_bytes() for p in shards.iterdir()} == before  # untouched, meta.json included

    subprocess.run(
        [sys.executable, "-m", "pipelines", "shard", "omniglot"],
        cwd=project,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert not scratch.exists() and (shards / "meta.json").exists()
    assert sorted(p.name for p in shards.iterdir()) == sorted(before)


def test_pretrained_weights_offline_name_the_file_the_url_and_the_setting(tmp_path, monkeypatch):
    """A paper recipe with `pretrained: true` on a machine without the weight file and without internet: a
    clear error before any compute (it was urllib's traceback); with the file in TORCH_HOME's cache, no fetch
    at all."""
    import urllib.error

    import torch.hub
    from torchvision.models import VGG16_Weights

    from datamodules.files import pretrained
    from lightning_modules.fcn import FCN

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # get_dir() reads TORCH_HOME unless a dir was set

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(DataError) as error:
        FCN(pretrained=True)
    message = str(error.value)
    assert (
        f"{tmp_path}/hub/checkpoints/vgg16-397923af.pth" in message
        and VGG16_Weights.IMAGENET1K_V1.url in message
    )
    assert "TORCH_HOME" in message and "no route to host" in message
    cached = tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    cached.write_bytes(b"")  # present: torchvision loads (and hash-checks) it; nothing is fetched
    assert pretrained(VGG16_Weights.IMAGENET1K_V1) is VGG16_Weights.IMAGENET1K_V1


def test_sizing_with_random_weights_needs_no_weight_file(tmp_path, monkeypatch):
    """preflight --random-weights: the same architecture, randomly initialised, on a machine that has not got
    the file (and no internet): nothing is looked for or fetched."""
    import torch.hub

    from datamodules import files
    from lightning_modules.fcn import FCN

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("fetched"))
    monkeypatch.setitem(files.RANDOM_WEIGHTS, "on", True)
    net = FCN(classes=21, pretrained=True)
    assert sum(p.numel() for p in net.parameters()) > 100_000_000  # VGG-16's trunk and fc6/fc7 as convs
    assert not (tmp_path / "hub").exists()

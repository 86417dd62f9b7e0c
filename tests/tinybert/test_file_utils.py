"""cached_path against a loopback HTTP server and moto's S3 mock (never the outside network)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from transformer import file_utils, modeling
from transformer.file_utils import NotFoundError, cached_path, filename_to_url, url_to_filename
from utils.errors import InputError


class Files:
    """What the server serves: path -> (body, etag or None); '/broken' promises more bytes than it sends."""

    def __init__(self):
        self.content: dict[str, tuple[bytes, str | None]] = {}
        self.gets: list[str] = []


def make_handler(files: Files):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _headers(self) -> bytes | None:
            if self.path == "/broken":
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                return b"x" * 1000
            if self.path not in files.content:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            body, etag = files.content[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            if etag:
                self.send_header("ETag", etag)
            self.end_headers()
            return body

        def do_HEAD(self):
            self._headers()

        def do_GET(self):
            files.gets.append(self.path)
            body = self._headers()
            if body:
                self.wfile.write(body)
                self.wfile.flush()
            if self.path == "/broken":
                self.close_connection = True

    return Handler


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    files = Files()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(files))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    files.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    files.httpd = httpd
    yield files
    httpd.shutdown()
    httpd.server_close()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_local_paths_and_bad_names(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("x")
    assert cached_path(path) == str(path)
    assert cached_path(tmp_path) == str(tmp_path)
    with pytest.raises(InputError, match="not found"):
        cached_path(tmp_path / "missing.txt")
    with pytest.raises(InputError, match="unsupported URL scheme 'ftp'"):
        cached_path("ftp://example.org/x")


def test_http_download_is_cached_by_url_and_etag(server, tmp_path):
    server.content["/vocab.txt"] = (b"[PAD]\n[UNK]\n", '"v1"')
    url = server.url + "/vocab.txt"
    first = cached_path(url, cache_dir=tmp_path)
    assert Path(first).name == sha(url) + "." + sha('"v1"') == url_to_filename(url, '"v1"')
    assert Path(first).read_bytes() == b"[PAD]\n[UNK]\n"
    assert json.loads(Path(first + ".json").read_text()) == {"url": url, "etag": '"v1"'}
    assert filename_to_url(Path(first).name, tmp_path) == (url, '"v1"')
    assert cached_path(url, cache_dir=tmp_path) == first
    assert server.gets == ["/vocab.txt"]  # the second call only asked for the ETag

    server.content["/vocab.txt"] = (b"[PAD]\n[UNK]\n[CLS]\n", '"v2"')
    second = cached_path(url, cache_dir=tmp_path)
    assert second != first and Path(second).read_bytes().endswith(b"[CLS]\n")

    server.content["/noetag.bin"] = (b"\x00\x01", None)
    plain = cached_path(server.url + "/noetag.bin", cache_dir=tmp_path)
    assert Path(plain).name == sha(server.url + "/noetag.bin")


def test_default_cache_directory_comes_from_the_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTORCH_PRETRAINED_BERT_CACHE", str(tmp_path / "cache"))
    server.content["/f"] = (b"abc", '"e"')
    assert Path(cached_path(server.url + "/f")).parent == tmp_path / "cache"
    monkeypatch.delenv("PYTORCH_PRETRAINED_BERT_CACHE")
    assert file_utils.default_cache_dir() == Path.home() / ".pytorch_pretrained_bert"


def test_missing_and_interrupted_downloads_leave_nothing_behind(server, tmp_path):
    with pytest.raises(NotFoundError, match="HTTP 404") as err:
        cached_path(server.url + "/absent", cache_dir=tmp_path)
    assert err.value.path == server.url + "/absent"
    with pytest.raises(InputError, match="interrupted"):
        cached_path(server.url + "/broken", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_offline_falls_back_to_the_newest_cached_copy(server, tmp_path):
    url = server.url + "/model.bin"
    server.content["/model.bin"] = (b"old", '"1"')
    old = cached_path(url, cache_dir=tmp_path)
    server.content["/model.bin"] = (b"new", '"2"')
    new = cached_path(url, cache_dir=tmp_path)
    os.utime(old, (1, 1))
    server.httpd.shutdown()
    server.httpd.server_close()
    assert cached_path(url, cache_dir=tmp_path) == new
    with pytest.raises(InputError, match="cannot reach the server"):
        cached_path(server.url + "/never-downloaded", cache_dir=tmp_path)


def test_s3_with_moto(tmp_path, monkeypatch):
    moto = pytest.importorskip("moto")
    import boto3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="models")
        client.put_object(Bucket="models", Key="bert/vocab.txt", Body=b"[PAD]\nhello\n")
        etag = client.head_object(Bucket="models", Key="bert/vocab.txt")["ETag"]
        path = cached_path("s3://models/bert/vocab.txt", cache_dir=tmp_path)
        assert Path(path).read_bytes() == b"[PAD]\nhello\n"
        assert Path(path).name == url_to_filename("s3://models/bert/vocab.txt", etag)
        assert cached_path("s3://models/bert/vocab.txt", cache_dir=tmp_path) == path
        with pytest.raises(NotFoundError, match="not found on S3"):
            cached_path("s3://models/bert/absent.bin", cache_dir=tmp_path)
        with pytest.raises(InputError, match="bad s3 path"):
            cached_path("s3://models", cache_dir=tmp_path)


def test_from_pretrained_reads_urls_of_directories_and_archives(server, tmp_path):
    torch.manual_seed(0)
    config = modeling.BertConfig(50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20, max_position_embeddings=16)
    model = modeling.BertModel(config)
    model.save_pretrained(tmp_path / "model")
    weights = (tmp_path / "model" / "pytorch_model.bin").read_bytes()
    # a hub-style directory whose config has Google's name (config.json answers 404)
    server.content["/m/bert_config.json"] = ((tmp_path / "model" / "config.json").read_bytes(), '"c"')
    server.content["/m/pytorch_model.bin"] = (weights, '"w"')
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(tmp_path / "model" / "config.json", arcname="config.json")
        archive.add(tmp_path / "model" / "pytorch_model.bin", arcname="pytorch_model.bin")
    server.content["/m.tar.gz"] = (buffer.getvalue(), '"a"')

    for url in (server.url + "/m", server.url + "/m.tar.gz"):
        loaded = modeling.BertModel.from_pretrained(url, cache_dir=tmp_path / "cache")
        assert torch.equal(loaded.encoder.layer[0].output.dense.weight, model.encoder.layer[0].output.dense.weight)
    with pytest.raises(InputError, match="none of config.json, bert_config.json"):
        modeling.BertModel.from_pretrained(server.url + "/nothing", cache_dir=tmp_path / "cache")


def test_importing_the_package_does_not_import_network_clients():
    code = "import sys, transformer; print(sorted(m for m in ('requests', 'boto3', 'tensorflow') if m in sys.modules))"
    tree = Path(__file__).resolve().parents[2] / "TinyBERT"
    result = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

"""Local paths, http(s) and s3 URLs resolved to local files, downloads cached as pytorch-pretrained-bert did.

A URL's copy lives in the cache directory under sha256(url)[.sha256(etag)], with `<name>.json` beside it
holding the URL and ETag. Downloads go to a temporary file that is renamed only when complete, so a
partial download never sits under the final name. When the server cannot be reached, the newest cached
copy of the URL is used. requests and boto3 are imported only when a URL needs them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import IO, Optional, Union
from urllib.parse import urlparse

from tqdm import tqdm

from utils.errors import InputError
from utils.fileio import write_json

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
BERT_CONFIG_NAME = "bert_config.json"
WEIGHTS_NAME = "pytorch_model.bin"
SAFE_WEIGHTS_NAME = "model.safetensors"
TF_WEIGHTS_NAME = "model.ckpt"

REMOTE_SCHEMES = ("http", "https", "s3")
_TIMEOUT_S = 30
_CHUNK = 1 << 20


class NotFoundError(InputError):
    """The server answered that the file does not exist (HTTP 404, S3 NoSuchKey)."""


class _Unreachable(Exception):
    """The server could not be asked at all (no network, refused connection, timeout)."""


def default_cache_dir() -> Path:
    """$PYTORCH_PRETRAINED_BERT_CACHE, else ~/.pytorch_pretrained_bert, as the original."""
    return Path(os.getenv("PYTORCH_PRETRAINED_BERT_CACHE", Path.home() / ".pytorch_pretrained_bert"))


def is_remote(url_or_filename: Union[str, os.PathLike]) -> bool:
    return urlparse(os.fspath(url_or_filename)).scheme in REMOTE_SCHEMES


def url_to_filename(url: str, etag: Optional[str] = None) -> str:
    """sha256(url), plus '.' + sha256(etag) when the server gave an ETag."""
    filename = hashlib.sha256(url.encode("utf-8")).hexdigest()
    if etag:
        filename += "." + hashlib.sha256(etag.encode("utf-8")).hexdigest()
    return filename


def filename_to_url(filename: str, cache_dir: Optional[Union[str, os.PathLike]] = None) -> tuple[str, Optional[str]]:
    """The (url, etag) a cached file was downloaded from, read from its metadata file."""
    meta_path = Path(cache_dir or default_cache_dir()) / (filename + ".json")
    if not meta_path.is_file():
        raise InputError("no cache metadata for this file", meta_path)
    with open(meta_path, encoding="utf-8") as handle:
        metadata = json.load(handle)
    return metadata["url"], metadata["etag"]


def cached_path(url_or_filename: Union[str, os.PathLike], cache_dir: Optional[Union[str, os.PathLike]] = None) -> str:
    """Return a local path for a local file or directory, or for an http(s):// or s3:// URL (downloaded once)."""
    name = os.fspath(url_or_filename)
    scheme = urlparse(name).scheme
    if scheme in REMOTE_SCHEMES:
        return get_from_cache(name, cache_dir)
    if os.path.exists(name):
        return name
    if scheme in ("", "file") or os.path.isabs(name):
        raise InputError("file or directory not found", name)
    raise InputError(f"unsupported URL scheme '{scheme}' (expected a local path, http(s):// or s3://)", name)


def get_from_cache(url: str, cache_dir: Optional[Union[str, os.PathLike]] = None) -> str:
    """Download `url` into the cache unless the copy for its current ETag is there; return the cached path."""
    cache = Path(cache_dir or default_cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    s3 = urlparse(url).scheme == "s3"
    try:
        etag = _s3_etag(url) if s3 else _http_etag(url)
    except _Unreachable as err:
        cached = _newest_cached_copy(cache, url)
        if cached is None:
            raise InputError(f"cannot reach the server ({err}) and no copy is cached in {cache}", url) from None
        logger.warning("cannot reach %s (%s); using the cached copy %s", url, err, cached)
        return str(cached)
    path = cache / url_to_filename(url, etag)
    if path.exists():
        return str(path)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=cache)
    try:
        with os.fdopen(fd, "wb") as handle:
            if s3:
                _s3_get(url, handle)
            else:
                _http_get(url, handle, desc=path.name[:16])
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    write_json(str(path) + ".json", {"url": url, "etag": etag})
    logger.info("downloaded %s to %s", url, path)
    return str(path)


def _newest_cached_copy(cache: Path, url: str) -> Optional[Path]:
    stem = url_to_filename(url)
    copies = [
        entry
        for entry in cache.iterdir()
        if (entry.name == stem or entry.name.startswith(stem + ".")) and not entry.name.endswith(".json")
    ]
    return max(copies, key=lambda entry: entry.stat().st_mtime, default=None)


def _http_etag(url: str) -> Optional[str]:
    import requests

    try:
        response = requests.head(url, allow_redirects=True, timeout=_TIMEOUT_S)
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as err:
        raise _Unreachable(type(err).__name__) from None
    _check_status(url, response.status_code)
    return response.headers.get("ETag")


def _check_status(url: str, status: int) -> None:
    if status == 404:
        raise NotFoundError("not found on the server (HTTP 404)", url)
    if status != 200:
        raise InputError(f"the server answered HTTP {status}", url)


def _http_get(url: str, handle: IO[bytes], desc: str) -> None:
    import requests

    written = 0
    try:
        with requests.get(url, stream=True, timeout=_TIMEOUT_S) as response:
            _check_status(url, response.status_code)
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
            with tqdm(total=total, unit="B", unit_scale=True, desc=desc) as progress:
                for chunk in response.iter_content(chunk_size=_CHUNK):
                    handle.write(chunk)
                    written += len(chunk)
                    progress.update(len(chunk))
    except requests.exceptions.RequestException as err:
        raise InputError(f"download interrupted after {written} bytes ({type(err).__name__})", url) from None
    if total is not None and written != total:
        raise InputError(f"download interrupted: {written} of {total} bytes received", url)


def split_s3_path(url: str) -> tuple[str, str]:
    """s3://bucket/key/path -> (bucket, 'key/path')."""
    parsed = urlparse(url)
    if not parsed.netloc or not parsed.path.strip("/"):
        raise InputError("bad s3 path (expected s3://bucket/key)", url)
    return parsed.netloc, parsed.path.lstrip("/")


def _s3_call(url: str, call):
    """Run an S3 request, turning its failures into the errors of this module."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    try:
        return call()
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
            raise NotFoundError("not found on S3", url) from None
        raise InputError(f"S3 error {code}", url) from None
    except NoCredentialsError:
        raise InputError("no AWS credentials found for S3", url) from None
    except EndpointConnectionError as err:
        raise _Unreachable(str(err)) from None


def _s3_etag(url: str) -> Optional[str]:
    import boto3

    bucket, key = split_s3_path(url)
    client = boto3.client("s3")
    return _s3_call(url, lambda: client.head_object(Bucket=bucket, Key=key)).get("ETag")


def _s3_get(url: str, handle: IO[bytes]) -> None:
    import boto3

    bucket, key = split_s3_path(url)
    client = boto3.client("s3")
    _s3_call(url, lambda: client.download_fileobj(bucket, key, handle))

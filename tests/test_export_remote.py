"""Exports to fsspec URLs: a real S3 server (moto's, on 127.0.0.1, started and stopped here) through s3fs, and
memory://. Documents are read back from the server; a failed export leaves no object; errors are short.

Nothing here may leave loopback: dummy credentials, no config files, no EC2 metadata lookup, and a guard that
fails the test if any connection or name lookup aims elsewhere.
"""

from __future__ import annotations

import io
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import export_factory as factory
import fsspec
import openpyxl
import polars as pl
import pytest

from torq_nb.cli import main
from torq_nb.export import FORMATS, export, manager, resolve_format
from torq_nb.research.batch import BatchResults, _Outcome

BUCKET = "reports"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A moto S3 server on 127.0.0.1 with the bucket ``reports``; yields a boto3 client for it (its
    ``endpoint`` attribute holds the URL). The AWS variables point at nothing real while it runs."""
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    none = tmp_path_factory.mktemp("aws") / "none"
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        env.setenv("AWS_CONFIG_FILE", str(none))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(none))
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
            client.create_bucket(Bucket=BUCKET)
            client.endpoint = f"http://{host}:{port}"
            yield client
        finally:
            server.stop()
            fsspec.get_filesystem_class("s3").clear_instance_cache()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if anything connects to, or looks up, an address other than loopback."""
    attempts: list[str] = []
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def check(address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and host not in LOOPBACK:
            attempts.append(str(host))
            raise OSError(f"test guard: refused a connection to {host}")

    def guarded_connect(self: socket.socket, address: Any) -> None:
        check(address)
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        check((host.decode() if isinstance(host, bytes) else host, 0))
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield
    assert attempts == [], f"something tried to leave loopback: {attempts}"


def options(s3: Any) -> dict[str, Any]:
    return {"endpoint_url": s3.endpoint}


def read(s3: Any, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def keys(s3: Any) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_csv_xlsx_and_pdf_reach_s3_whole(s3: Any, tmp_path: Path) -> None:
    results = factory.results(4, fail_every=4)
    assert results.export("s3://reports/run/r.csv", storage_options=options(s3)) == "s3://reports/run/r.csv"
    assert read(s3, "run/r.csv") == Path(export(results, tmp_path / "r.csv")).read_bytes()

    assert export(results, "s3://reports/run/r.xlsx", storage_options=options(s3)) == "s3://reports/run/r.xlsx"
    sheet = openpyxl.load_workbook(io.BytesIO(read(s3, "run/r.xlsx")))["results"]
    assert sheet["C2"].hyperlink.target == results.df["url"][0] and sheet.max_row == 5

    export(factory.results(2, topic="Uploaded topic"), "s3://reports/run/r.pdf", storage_options=options(s3))
    (tmp_path / "back.pdf").write_bytes(read(s3, "run/r.pdf"))
    text = factory.pdf_text(tmp_path / "back.pdf")
    assert "Research: Uploaded topic" in text and "example.org/articles/2" in text


def test_a_failed_export_uploads_nothing_and_keeps_the_old_object(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    results = factory.results(2)
    export(results, "s3://reports/keep.csv", storage_options=options(s3))
    before = read(s3, "keep.csv")

    def half_then_fail(fh: Any, run: Any, opts: Any) -> None:
        fh.write(b"rank,title\n1,half")
        raise RuntimeError("writer broke halfway")

    monkeypatch.setitem(manager._WRITERS, "csv", half_then_fail)
    for key in ("keep.csv", "never.csv"):
        with pytest.raises(RuntimeError, match="halfway"):
            export(results, f"s3://reports/{key}", storage_options=options(s3))
    assert read(s3, "keep.csv") == before and "never.csv" not in keys(s3)


def test_zip_and_batch_tables_upload(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    export(factory.results(2), "s3://reports/bundle.zip", storage_options=options(s3))
    with zipfile.ZipFile(io.BytesIO(read(s3, "bundle.zip"))) as zf:
        assert {"bundle.xlsx", "bundle.pdf", "bundle.csv"} <= set(zf.namelist())
    # A batch export takes the endpoint from the environment, as boto does.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    batch = BatchResults(["solar", "wind"], {"solar": _Outcome("complete", "solar", factory.results(3, topic="solar")),
                                             "wind": _Outcome("complete", "wind", factory.results(1, topic="wind"))})
    assert batch.export("s3://reports/batch.xlsx") == "s3://reports/batch.xlsx"
    back = pl.read_excel(read(s3, "batch.xlsx"), sheet_name="results", engine="calamine")
    assert back["topic"].to_list() == ["solar"] * 3 + ["wind"]


def test_memory_urls_for_every_tabular_format() -> None:
    results = factory.results(3)
    memory = fsspec.filesystem("memory")
    for suffix in (".csv", ".json", ".ndjson", ".parquet", ".xlsx"):
        url = f"memory://exports/r{suffix}"
        assert export(results, url) == url
        assert memory.cat_file(f"/exports/r{suffix}")
    assert pl.read_parquet(memory.cat_file("/exports/r.parquet")).equals(results.df)
    with pytest.raises(RuntimeError, match="halfway"), pytest.MonkeyPatch.context() as patch:
        patch.setitem(manager._WRITERS, "json", lambda fh, run, o: (_ for _ in ()).throw(RuntimeError("halfway")))
        export(results, "memory://exports/failed.json")
    assert not memory.exists("/exports/failed.json")


def test_format_comes_from_the_url_path() -> None:
    assert resolve_format("s3://b/dir/report.PDF?versionId=3") == "pdf"
    assert resolve_format("memory://r.xlsx#sheet") == "excel"
    assert resolve_format("gcs://bucket/a.b/rows.jsonl") == "ndjson"
    with pytest.raises(ValueError, match=r"suffix '\.docx' of r\.docx"):
        resolve_format("s3://b/r.docx?x=.csv")


def test_errors_say_what_to_do(s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = factory.results(1)
    with pytest.raises(ValueError, match=r"no protocol 'nope'.*s3://"):
        export(results, "nope://bucket/r.csv")
    if not _installed("gcsfs"):
        with pytest.raises(ImportError, match=r"gcs:// needs the package gcsfs: pip install gcsfs"):
            export(results, "gcs://bucket/r.csv")
    with pytest.raises(FileNotFoundError, match=r"cannot upload s3://missing-bucket/r.csv: .*bucket"):
        export(results, "s3://missing-bucket/r.csv", storage_options=options(s3))
    with pytest.raises(ValueError, match="storage_options apply to URLs"):
        export(results, tmp_path / "r.csv", storage_options=options(s3))
    from moto import settings

    with pytest.MonkeyPatch.context() as strict:  # moto checks keys against its IAM users from the first request
        strict.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        with pytest.raises(PermissionError, match=r"^cannot upload s3://reports/wrong\.csv: .*Access Key.*storage_options="):
            export(results, "s3://reports/wrong.csv",
                   storage_options={**options(s3), "key": "wrong", "secret": "wrong", "skip_instance_cache": True})
    assert "wrong.csv" not in keys(s3)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(PermissionError) as refused:
        export(results, "s3://reports/nocreds.csv", storage_options={**options(s3), "skip_instance_cache": True})
    message = str(refused.value)
    assert "Unable to locate credentials" in message and "storage_options=" in message and "\n" not in message
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_cli_exports_to_a_url(s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    run = Path(export(factory.results(2), tmp_path / "run.json"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    assert main(["export", str(run), "s3://reports/cli/again.xlsx"]) == 0
    assert "wrote s3://reports/cli/again.xlsx" in capsys.readouterr().err
    assert read(s3, "cli/again.xlsx")[:2] == b"PK"
    assert main(["export", str(run), "s3://missing-bucket/x.csv"]) == 1
    assert "torq-nb: export failed: cannot upload s3://missing-bucket/x.csv" in capsys.readouterr().err


def test_cli_help_lists_every_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(suffix in text for suffixes in FORMATS.values() for suffix in suffixes), text
    assert "s3://" in text

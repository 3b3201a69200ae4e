"""utils/download_librispeech.py against a local HTTP server that speaks Range and can drop connections."""
from __future__ import annotations

import hashlib
import importlib.util
import io
import random
import re
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("restore_logging")  # main() installs its own root handler

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "utils" / "download_librispeech.py"
# A host that never resolves: if --mirror were ignored the test fails fast instead of using the network.
FAKE_BASE = "http://mirror.invalid/resources/12"


def _load_script():
    spec = importlib.util.spec_from_file_location("download_librispeech", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


dl = _load_script()


# ------------------------------------------------------------------------------ local server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        srv = self.server
        name = self.path.rsplit("/", 1)[-1]
        range_header = self.headers.get("Range")
        with srv.lock:
            srv.requests.append((name, range_header))
            cut = srv.cut_once.pop(name, None)
            unavailable = cut is None and srv.unavailable > 0
            srv.unavailable -= unavailable
        data = srv.files.get(name)
        if data is None or unavailable:
            self.send_response(404 if data is None else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if m and not srv.ignore_range:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut is not None:
            # Promise the whole body, send part of it, hang up: what a dropped connection looks like.
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class Server:
    """Serves ``files`` (name -> bytes) and records every GET as (name, Range header)."""

    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.files, self.httpd.requests, self.httpd.cut_once = {}, [], {}
        self.httpd.ignore_range, self.httpd.lock = False, threading.Lock()
        self.httpd.unavailable = 0  # answer this many requests (after any cut) with 503
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/resources/12/"

    @property
    def files(self) -> dict[str, bytes]:
        return self.httpd.files

    @property
    def requests(self) -> list[tuple[str, str | None]]:
        return self.httpd.requests

    def gets(self, name: str) -> list[str | None]:
        return [rng for n, rng in self.requests if n == name]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


# ------------------------------------------------------------------------------ test data


def make_subset_tar(subset: str, n_chapters: int = 2, blob: int = 40_000) -> bytes:
    """A .tar.gz in LibriSpeech layout; ``blob`` incompressible bytes per audio file so the archive stays big."""
    rng = random.Random(subset)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("LibriSpeech/README.TXT", b"test corpus\n")
        for ch in range(n_chapters):
            folder = f"LibriSpeech/{subset}/84/{121 + ch}"
            add(f"{folder}/84-{121 + ch}.trans.txt", f"84-{121 + ch}-0000 HELLO {subset.upper()}\n".encode())
            add(f"{folder}/84-{121 + ch}-0000.flac", rng.randbytes(blob))
    return buf.getvalue()


def make_evil_tar(kind: str, outside: Path) -> tuple[bytes, str]:
    """A tar holding one good file and one member of ``kind`` aimed at ``outside``; returns (bytes, name)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        good = tarfile.TarInfo("LibriSpeech/dev-clean/1/2/1-2.trans.txt")
        good.size = 3
        tar.addfile(good, io.BytesIO(b"ok\n"))
        if kind == "dotdot":
            info = tarfile.TarInfo("LibriSpeech/../../" + outside.name)
        elif kind == "absolute":
            info = tarfile.TarInfo(str(outside))
        elif kind == "symlink":
            info = tarfile.TarInfo("LibriSpeech/dev-clean/link")
            info.type, info.linkname = tarfile.SYMTYPE, "../../../" + outside.name
        elif kind == "abs_symlink":
            info = tarfile.TarInfo("LibriSpeech/dev-clean/link")
            info.type, info.linkname = tarfile.SYMTYPE, str(outside)
        elif kind == "hardlink":
            info = tarfile.TarInfo("LibriSpeech/dev-clean/hard")
            info.type, info.linkname = tarfile.LNKTYPE, "../" + outside.name
        elif kind == "device":
            info = tarfile.TarInfo("LibriSpeech/dev-clean/null")
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        elif kind == "fifo":
            info = tarfile.TarInfo("LibriSpeech/dev-clean/pipe")
            info.type = tarfile.FIFOTYPE
        else:
            raise ValueError(kind)
        data = b"pwned\n" if info.isfile() else b""
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue(), info.name


def write_csv(path: Path, rows: dict[str, bytes], md5_override: dict[str, str] | None = None) -> Path:
    """A csv in the project format with URLs on FAKE_BASE (the tests reach the server via --mirror)."""
    lines = ["subset,url,md5,size"]
    for subset, data in rows.items():
        md5 = (md5_override or {}).get(subset) or hashlib.md5(data).hexdigest()
        lines.append(f"{subset},{FAKE_BASE}/{subset}.tar.gz,{md5},{len(data)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def run(csv: Path, dest: Path, server: Server, *extra: str) -> int:
    return dl.main(["--csv", str(csv), "--dest", str(dest), "--mirror", server.base,
                    "--retry_wait", "0", "--timeout", "5", "--no_progress", *extra])


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and mtime, to prove nothing changed."""
    return {str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*")}


# ------------------------------------------------------------------------------ tests


def test_shipped_csv_lists_the_seven_subsets():
    entries = dl.read_csv(ROOT / "utils" / "librispeech.csv")
    assert [e.subset for e in entries] == ["dev-clean", "dev-other", "test-clean", "test-other",
                                           "train-clean-100", "train-clean-360", "train-other-500"]
    for e in entries:
        assert e.url == f"https://www.openslr.org/resources/12/{e.subset}.tar.gz"
        assert re.fullmatch(r"[0-9a-f]{32}", e.md5) and e.size and e.size > 300_000_000
    assert len({e.md5 for e in entries}) == 7


def test_download_verify_extract_then_rerun_does_nothing(tmp_path, server):
    data = make_subset_tar("dev-clean")
    server.files["dev-clean.tar.gz"] = data
    csv = write_csv(tmp_path / "test.csv", {"dev-clean": data})
    dest = tmp_path / "data"

    assert run(csv, dest, server, "--subsets", "dev-clean") == 0
    chapter = dest / "LibriSpeech" / "dev-clean" / "84" / "121"
    assert (chapter / "84-121.trans.txt").read_text() == "84-121-0000 HELLO DEV-CLEAN\n"
    assert (chapter / "84-121-0000.flac").stat().st_size > 30_000
    assert (dest / "dev-clean.tar.gz").read_bytes() == data
    assert not (dest / "dev-clean.tar.gz.part").exists()
    assert not list(dest.glob(".extract-*"))
    assert server.gets("dev-clean.tar.gz") == [None]

    # The second run goes through the real command line.
    before = snapshot(dest)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--csv", str(csv), "--dest", str(dest),
                           "--subsets", "dev-clean", "--mirror", server.base],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert server.gets("dev-clean.tar.gz") == [None], "a verified, extracted subset was fetched again"
    assert "skipped: dev-clean" in proc.stderr and "downloaded: none" in proc.stderr
    assert snapshot(dest) == before


def test_interrupted_download_resumes_with_range(tmp_path, server, capsys):
    data = make_subset_tar("dev-clean")
    assert len(data) > 50_000
    server.files["dev-clean.tar.gz"] = data
    cut = 12_345
    server.httpd.cut_once["dev-clean.tar.gz"] = cut
    csv = write_csv(tmp_path / "test.csv", {"dev-clean": data})
    dest = tmp_path / "data"

    # The connection drops, then the server is down for longer than the retries last: the run fails
    # and leaves the partial file for the next run.
    server.httpd.unavailable = 2
    assert run(csv, dest, server, "--retries", "1") == 1
    assert "re-run to resume from byte 12345" in capsys.readouterr().err
    part = dest / "dev-clean.tar.gz.part"
    assert part.stat().st_size == cut
    assert not (dest / "dev-clean.tar.gz").exists()

    assert run(csv, dest, server) == 0
    assert server.gets("dev-clean.tar.gz") == [None, f"bytes={cut}-", f"bytes={cut}-", f"bytes={cut}-"]
    assert dl.md5_of_file(dest / "dev-clean.tar.gz") == hashlib.md5(data).hexdigest()
    assert not part.exists()
    assert (dest / "LibriSpeech" / "dev-clean" / "84" / "122" / "84-122.trans.txt").exists()


def test_short_read_is_retried_within_one_run(tmp_path, server):
    data = make_subset_tar("dev-clean")
    server.files["dev-clean.tar.gz"] = data
    server.httpd.cut_once["dev-clean.tar.gz"] = 5000
    part = tmp_path / "dev-clean.tar.gz.part"
    dl.download_with_resume(server.base + "dev-clean.tar.gz", part, len(data), retries=1, retry_wait=0,
                            timeout=5, progress=False)
    assert part.read_bytes() == data
    assert server.gets("dev-clean.tar.gz") == [None, "bytes=5000-"]


def test_server_ignoring_range_restarts_from_zero(tmp_path, server):
    data = make_subset_tar("dev-clean")
    server.files["dev-clean.tar.gz"] = data
    server.httpd.ignore_range = True
    part = tmp_path / "dev-clean.tar.gz.part"
    part.write_bytes(data[:777])
    dl.download_with_resume(server.base + "dev-clean.tar.gz", part, None, retries=0, progress=False)
    assert part.read_bytes() == data  # not data[:777] + data
    assert server.gets("dev-clean.tar.gz") == ["bytes=777-"]


def test_complete_part_file_gets_416_and_is_kept(tmp_path, server):
    data = make_subset_tar("dev-clean")
    server.files["dev-clean.tar.gz"] = data
    part = tmp_path / "dev-clean.tar.gz.part"
    part.write_bytes(data)
    # No expected size: the request is sent and the server answers 416 Range Not Satisfiable.
    dl.download_with_resume(server.base + "dev-clean.tar.gz", part, None, retries=0, progress=False)
    assert part.read_bytes() == data
    assert server.gets("dev-clean.tar.gz") == [f"bytes={len(data)}-"]


def test_bad_checksum_is_reported_and_other_subsets_untouched(tmp_path, server, capsys):
    good, other = make_subset_tar("dev-clean"), make_subset_tar("test-clean")
    server.files.update({"dev-clean.tar.gz": good, "test-clean.tar.gz": other})
    wrong = "0123456789abcdef0123456789abcdef"
    csv = write_csv(tmp_path / "test.csv", {"dev-clean": good, "test-clean": other}, {"test-clean": wrong})
    dest = tmp_path / "data"
    assert run(csv, dest, server, "--subsets", "dev-clean") == 0
    verified = snapshot(dest)
    capsys.readouterr()

    assert run(csv, dest, server, "--subsets", "dev-clean,test-clean") == 1
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if " ERROR " in line]
    assert len(error_lines) == 1
    assert "test-clean.tar.gz" in error_lines[0]
    assert wrong in error_lines[0] and hashlib.md5(other).hexdigest() in error_lines[0]
    assert "--mirror" in error_lines[0]
    assert "Traceback" not in err
    assert "failed: test-clean" in err

    # The verified subset is exactly as it was; the bad archive is kept aside, never under its final name.
    after = snapshot(dest)
    assert {k: v for k, v in after.items() if k in verified} == verified
    assert not (dest / "test-clean.tar.gz").exists()
    assert (dest / "test-clean.tar.gz.bad").read_bytes() == other
    assert not (dest / "LibriSpeech" / "test-clean").exists()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "abs_symlink", "hardlink", "device", "fifo"])
def test_malicious_members_are_rejected(tmp_path, server, capsys, kind):
    outside = tmp_path / "evil.txt"
    data, member = make_evil_tar(kind, outside)
    server.files["dev-clean.tar.gz"] = data
    csv = write_csv(tmp_path / "test.csv", {"dev-clean": data})
    dest = tmp_path / "data"
    before = sorted(p.name for p in tmp_path.iterdir())

    assert run(csv, dest, server, "--subsets", "dev-clean") == 1
    err = capsys.readouterr().err
    assert f"refusing to extract member {member!r}" in err
    assert "Traceback" not in err
    assert not outside.exists() and not outside.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["data"])
    # Nothing from the rejected archive reached its final place, and no extraction was stamped.
    assert not (dest / "LibriSpeech").exists()
    assert not list(dest.glob(".extract-*"))
    assert not (dest / ".download_state" / "dev-clean.extracted.json").exists()


def test_symlink_chain_through_an_earlier_link_is_rejected():
    # "d/a" -> ".." stays inside on its own, and so does "d/a/b" -> ".." read as text ("d"); but on
    # disk d/a/b would sit at the root and point one level above the destination.
    link = tarfile.TarInfo("d/a")
    link.type, link.linkname = tarfile.SYMTYPE, ".."
    nested = tarfile.TarInfo("d/a/b")
    nested.type, nested.linkname = tarfile.SYMTYPE, ".."
    assert dl.check_member(link, set()) is None
    assert "through the symlink 'd/a'" in dl.check_member(nested, {"d/a"})


def test_unknown_subset_lists_valid_names(tmp_path, capsys):
    dest = tmp_path / "data"
    code = dl.main(["--csv", str(ROOT / "utils" / "librispeech.csv"), "--dest", str(dest),
                    "--subsets", "dev-clean,dev-cleen"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown subset(s) 'dev-cleen'" in err
    assert "valid: dev-clean, dev-other, test-clean, test-other, train-clean-100, train-clean-360, " \
           "train-other-500" in err
    assert not dest.exists()


def test_skip_flags(tmp_path, server, capsys):
    data = make_subset_tar("dev-clean")
    server.files["dev-clean.tar.gz"] = data
    dest = tmp_path / "data"
    wrong = write_csv(tmp_path / "wrong.csv", {"dev-clean": data}, {"dev-clean": "f" * 32})
    good = write_csv(tmp_path / "good.csv", {"dev-clean": data})

    # --skip_download with nothing on disk fails clearly and fetches nothing.
    assert run(good, dest, server, "--skip_download") == 1
    assert "--skip_download" in capsys.readouterr().err and server.requests == []

    # --skip_checksum accepts the archive despite the wrong md5 but does not stamp it verified.
    assert run(wrong, dest, server, "--skip_checksum", "--skip_extract") == 0
    assert (dest / "dev-clean.tar.gz").read_bytes() == data
    assert not (dest / ".download_state" / "dev-clean.verified.json").exists()
    assert not (dest / "LibriSpeech").exists()

    # Later, the archive on disk is verified and extracted without another request.
    assert not (dest / ".download_state" / "dev-clean.extracted.json").exists()
    assert run(good, dest, server, "--skip_download") == 0
    assert len(server.requests) == 1
    assert (dest / ".download_state" / "dev-clean.verified.json").exists()
    assert (dest / "LibriSpeech" / "dev-clean" / "84" / "121" / "84-121.trans.txt").exists()


def test_interrupted_extraction_is_redone(tmp_path, server):
    data = make_subset_tar("dev-clean")
    server.files["dev-clean.tar.gz"] = data
    csv = write_csv(tmp_path / "test.csv", {"dev-clean": data})
    dest = tmp_path / "data"
    assert run(csv, dest, server) == 0
    # Simulate a crash after some files were moved but before the stamp was written.
    (dest / ".download_state" / "dev-clean.extracted.json").unlink()
    victim = dest / "LibriSpeech" / "dev-clean" / "84" / "122" / "84-122-0000.flac"
    victim.unlink()
    assert run(csv, dest, server) == 0
    assert victim.exists()
    assert len(server.requests) == 1  # the verified archive was reused


def test_unverified_extraction_is_checked_once_checksums_are_on(tmp_path, server, capsys):
    data = make_subset_tar("dev-clean")
    server.files["dev-clean.tar.gz"] = data
    dest = tmp_path / "data"
    wrong = write_csv(tmp_path / "wrong.csv", {"dev-clean": data}, {"dev-clean": "e" * 32})
    assert run(wrong, dest, server, "--skip_checksum") == 0
    assert run(wrong, dest, server, "--skip_checksum") == 0  # stamped: nothing to do
    assert "skipped: dev-clean" in capsys.readouterr().err
    # Without the flag the unverified extraction does not count; the archive is checked and fails.
    assert run(wrong, dest, server) == 1
    assert "md5 mismatch for dev-clean.tar.gz" in capsys.readouterr().err
    assert len(server.requests) == 1

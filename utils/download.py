"""Shared machinery of the dataset downloaders (utils/download_librispeech.py, utils/download_speech_commands.py).

- An archive list is a csv with the columns ``<key>,url,md5,size`` (``size`` may be empty; the key
  column, e.g. ``subset`` or ``name``, defaults to the archive name without ``.tar.gz``).
- Downloads resume where they stopped (``<file>.part`` plus an HTTP Range request), are retried with
  backoff, and get their final name only once the md5 matches; a mismatching file is kept as
  ``<file>.bad``.
- Extraction checks every tar member first (no absolute paths, no ``..``, no links leading outside,
  no device files) and moves the members into place only after the whole archive extracted cleanly.
- Stamps in ``<dest>/.download_state/`` record verified archives and complete extractions, so the
  same command run again does no work.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import hashlib
import http.client
import json
import logging
import os
import posixpath
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Callable, Sequence

from tqdm import tqdm

from src.fileio import atomic_write_json
from src.log import current_rank

LOG = logging.getLogger("download")

STATE_DIR = ".download_state"
CHUNK = 1 << 20
USER_AGENT = "speech-model-zoo-downloader/1.0"
_MD5 = re.compile(r"[0-9a-f]{32}")


def files_help(extracted: str) -> str:
    """The ``--help`` epilog describing the files a downloader leaves in DEST."""
    return f"""\
files in DEST:
  <name>.tar.gz.part   download in progress; the next run resumes it with a Range request
  <name>.tar.gz        archive whose md5 matched (or was not checked, with --skip_checksum)
  <name>.tar.gz.bad    archive whose md5 did not match, kept for inspection; the next run downloads
                       the archive again from zero (delete the .bad file once you are done with it)
  .download_state/     stamps of verified archives and complete extractions (delete one to redo it)
{extracted}
exit codes: 0 success, 1 an archive failed (one error line each), 2 bad arguments, 130 interrupted
"""


class DownloadError(Exception):
    """An expected failure, reported as one line without a traceback."""


class UnsafeArchiveError(DownloadError):
    """An archive member that would write outside the destination or create a special file."""


# Only Pythons with extraction filters define FilterError; an empty tuple matches nothing.
_FILTER_ERROR = getattr(tarfile, "FilterError", ())


class _Retryable(Exception):
    """A transfer problem worth another attempt (short read, server error)."""


# Errors raised while a connection is open or being opened; anything else is not retried.
_RETRY_ON = (_Retryable, urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


@dataclass(frozen=True)
class Entry:
    """One file listed in a csv; ``md5`` is None only where the csv allows a missing checksum."""

    name: str
    url: str
    md5: str | None
    size: int | None = None

    @property
    def subset(self) -> str:
        """LibriSpeech's name for ``name``."""
        return self.name

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class Summary:
    """What happened to each entry, for the closing line."""

    downloaded: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def line(self) -> str:
        parts = [f"{k}: {', '.join(v) if v else 'none'}" for k, v in vars(self).items()]
        return "summary: " + "; ".join(parts)


# ----------------------------------------------------------------------------------------------
# csv


def read_csv(path: Path, key: str = "subset", require_md5: bool = True) -> list[Entry]:
    """Parse a file list with the columns ``<key>,url,md5,size``.

    ``url`` is required; ``md5`` too unless ``require_md5`` is False (an empty md5 then becomes None,
    and the file is downloaded unchecked with a warning); a malformed md5 is always an error.
    Lines starting with ``#`` are comments.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(line for line in f if line.strip() and not line.startswith("#")))
    except OSError as e:
        raise DownloadError(f"cannot read csv {path}: {e.strerror}") from None
    entries = []
    for n, row in enumerate(rows, start=2):
        url, md5 = (row.get("url") or "").strip(), (row.get("md5") or "").strip().lower()
        md5_ok = bool(_MD5.fullmatch(md5)) or (not md5 and not require_md5)
        if not url or not md5_ok:
            need = "a 32-digit hex md5" if require_md5 else "an md5 that is empty or 32 hex digits"
            raise DownloadError(f"{path}:{n}: each row needs a url and {need}, got {row}")
        name = url.rstrip("/").rsplit("/", 1)[-1]
        label = (row.get(key) or "").strip() or re.sub(r"(\.tar\.gz|\.tgz|\.tar)$", "", name)
        size = (row.get("size") or "").strip()
        try:
            entries.append(Entry(label, url, md5 or None, int(size) if size else None))
        except ValueError:
            raise DownloadError(f"{path}:{n}: size must be a byte count, got {size!r}") from None
    if not entries:
        raise DownloadError(f"{path} lists no files")
    return entries


def select_entries(entries: Sequence[Entry], names: str | None, what: str = "subset") -> list[Entry]:
    """Entries named in the comma-separated ``names`` (all when None), in the order given."""
    if not names:
        return list(entries)
    by_name = {e.name: e for e in entries}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown or not wanted:
        raise ValueError(f"unknown {what}(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"valid: {', '.join(by_name)}")
    return [by_name[n] for n in dict.fromkeys(wanted)]


def mirror_url(url: str, mirror: str | None) -> str:
    """Swap the folder part of ``url`` for the mirror base; the file name stays."""
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + url.rstrip("/").rsplit("/", 1)[-1]


# ----------------------------------------------------------------------------------------------
# download


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from ``bytes A-B/T`` or ``bytes */T``; None where absent."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _fetch_once(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One request that appends to ``part`` (or restarts it); raises _Retryable when cut short."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            _, total = _content_range(e.headers.get("Content-Range"))
            if total is None or total == offset:
                LOG.info("%s: already complete (%d bytes)", part.name, offset)
                return
            # The partial file is longer than the remote one: it cannot be a prefix of it.
            LOG.warning("%s has %d bytes but the server has %d; starting again", part.name, offset, total)
            part.unlink()
            raise _Retryable("partial file longer than the remote file") from None
        if e.code >= 500 or e.code in (408, 429):
            raise _Retryable(f"HTTP {e.code} {e.reason}") from None
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None

    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                LOG.warning("%s: server answered from byte %s, not %d; starting again", part.name, start, offset)
                part.unlink()
                raise _Retryable("unexpected Content-Range")
            mode = "ab"
        elif response.status == 200:
            if offset:
                LOG.info("%s: server ignored the Range request; downloading from the start", part.name)
            offset, total, mode = 0, length, "wb"
        else:
            raise DownloadError(f"{url}: unexpected HTTP status {response.status}")
        if total is None and length is not None:
            total = offset + length

        with open(part, mode) as f, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                         unit_divisor=1024, desc=part.name.removesuffix(".part"),
                                         disable=None if progress else True, leave=False) as bar:
            while chunk := response.read(CHUNK):
                f.write(chunk)
                bar.update(len(chunk))

    size = part.stat().st_size
    if total is not None and size < total:
        raise _Retryable(f"connection closed after {size} of {total} bytes")


def download_with_resume(url: str, part: Path, expected_size: int | None = None, *, timeout: float = 60.0,
                         retries: int = 5, retry_wait: float = 2.0, progress: bool = True) -> None:
    """Fetch ``url`` into ``part``, continuing from what is already there.

    Retries after connection errors and short reads with exponential backoff; the failure count is
    reset whenever an attempt made progress, so a flaky but working link eventually finishes.
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        if expected_size is not None and before == expected_size:
            return
        if expected_size is not None and before > expected_size:
            LOG.warning("%s is larger than the expected %d bytes; starting again", part.name, expected_size)
            part.unlink()
            before = 0
        try:
            _fetch_once(url, part, timeout, progress)
            return
        except _RETRY_ON as e:
            after = part.stat().st_size if part.exists() else 0
            failures = 0 if after > before else failures + 1
            if failures > retries:
                hint = (f"re-run to resume from byte {after}" if after
                        else "check the connection or try another server with --mirror URL")
                raise DownloadError(f"{url}: giving up after {retries} retries without progress: "
                                    f"{_describe(e)}; {hint}") from None
            wait = min(retry_wait * 2 ** max(failures - 1, 0), 60.0)
            LOG.warning("%s: %s; retrying from byte %d in %.1f s", part.name, _describe(e), after, wait)
            time.sleep(wait)


def _describe(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        return f"connection error ({e.reason})"
    return str(e) or type(e).__name__


def md5_of_file(path: Path, *, progress: bool = False, chunk_size: int = CHUNK) -> str:
    """Hex md5 of a file, read in chunks so memory stays flat for 30 GB archives."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=f"md5 {path.name}", disable=None if progress else True,
                                     leave=False) as bar:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# extraction


def check_member(member: tarfile.TarInfo, symlinks: set[str]) -> str | None:
    """Why ``member`` is unsafe to extract, or None when it is fine.

    ``symlinks`` holds the normalised names of links seen earlier in the archive: a later member
    whose path runs through one of them could be written wherever that link points.
    """
    name = member.name
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return "'..' in the path"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO"
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return f"unsupported member type {member.type!r}"
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in symlinks:
            return f"path goes through the symlink {'/'.join(parts[:i])!r}"
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hard link"
        target = member.linkname
        if target.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", target):
            return f"{kind} to the absolute path {target!r}"
        # Symlinks resolve from their own folder, hard links from the archive root.
        base = posixpath.dirname("/".join(parts)) if member.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, target))
        if resolved == ".." or resolved.startswith("../"):
            return f"{kind} to {target!r}, outside the destination"
    return None


class _ProgressReader:
    """File wrapper that advances a progress bar as the compressed archive is read."""

    def __init__(self, f: IO[bytes], bar: tqdm) -> None:
        self.f, self.bar = f, bar

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.bar.update(len(data))
        return data


def _move_tree(src: Path, dst: Path) -> None:
    """Move the contents of ``src`` into ``dst``, renaming whole folders where ``dst`` has none."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False) and target.is_dir():
            _move_tree(Path(entry.path), target)
        else:
            try:
                os.replace(entry.path, target)
            except OSError as e:
                raise DownloadError(f"cannot move {entry.path} to {target}: {e.strerror}") from None


def safe_extract(archive: Path, dest: Path, *, progress: bool = False, depth: int = 2) -> list[str]:
    """Extract ``archive`` into ``dest`` after checking every member; return the top paths written.

    Members go to a scratch folder inside ``dest`` first and are moved into place only once the
    whole archive extracted cleanly, so a rejected or interrupted archive leaves ``dest`` as it was.
    The returned paths (at most ``depth`` components, e.g. ``LibriSpeech/dev-clean``) let a later run
    check that the extraction is still there.
    """
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    scratch = dest / f".extract-{archive.name}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    # Python's own 'data' filter (3.11.4+, backported to some 3.8-3.10 releases) is a second line of
    # defence; check_member gives the same behaviour everywhere and names the member.
    filter_kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    top: set[str] = set()
    symlinks: set[str] = set()
    done = False
    try:
        with open(archive, "rb") as raw, \
                tqdm(total=archive.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=f"extract {archive.name}", disable=None if progress else True, leave=False) as bar, \
                tarfile.open(fileobj=_ProgressReader(raw, bar), mode="r|*") as tar:
            for member in tar:  # one streaming pass: the archive is decompressed once
                reason = check_member(member, symlinks)
                if reason:
                    raise UnsafeArchiveError(f"{archive.name}: refusing to extract member {member.name!r}: {reason}")
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                if member.issym():
                    symlinks.add("/".join(parts))
                if member.isdir():
                    member.mode |= 0o700  # a read-only folder would block the members inside it
                if parts:
                    top.add("/".join(parts[:depth]))
                tar.extract(member, scratch, **filter_kw)
        _move_tree(scratch, dest)
    except _FILTER_ERROR as e:
        raise UnsafeArchiveError(f"{archive.name}: refusing to extract member {e.tarinfo.name!r}: {e}") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DownloadError(f"{archive}: damaged or not a tar archive ({e}); delete it and re-run") from None
    else:
        done = True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if created and not done:  # leave no empty folder behind a rejected archive
            with contextlib.suppress(OSError):
                dest.rmdir()
    return sorted(top)


# ----------------------------------------------------------------------------------------------
# per-entry work


@dataclass(frozen=True)
class Options:
    """The command-line switches that steer one entry's processing."""

    dest: Path
    mirror: str | None = None
    skip_download: bool = False
    skip_checksum: bool = False
    skip_extract: bool = False
    remove_archives: bool = False
    timeout: float = 60.0
    retries: int = 5
    retry_wait: float = 2.0
    progress: bool = True


def _stamp(dest: Path, name: str, kind: str) -> Path:
    return dest / STATE_DIR / f"{name}.{kind}.json"


def _read_stamp(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _verified(entry: Entry, archive: Path, dest: Path) -> bool:
    """True when a stamp says this exact file already matched the csv md5."""
    if entry.md5 is None:
        return False
    stamp = _read_stamp(_stamp(dest, entry.name, "verified"))
    return (stamp.get("md5") == entry.md5 and archive.is_file()
            and stamp.get("size") == archive.stat().st_size)


def _extracted(entry: Entry, dest: Path, accept_unverified: bool) -> bool:
    """True when a complete extraction was stamped and its folders are still there.

    An extraction from an archive whose md5 was never checked counts only while the caller also
    skips checksums (or the csv has no md5 to check), so dropping --skip_checksum later gets the
    archive verified.
    """
    stamp = _read_stamp(_stamp(dest, entry.name, "extracted"))
    paths = stamp.get("paths")
    accept_unverified = accept_unverified or entry.md5 is None
    md5_ok = (entry.md5 is not None and stamp.get("md5") == entry.md5) or \
        (accept_unverified and stamp.get("md5") is None)
    return bool(paths) and md5_ok and all((dest / p).exists() for p in paths)


def _warn_if_low_space(dest: Path, needed: int | None) -> None:
    free = shutil.disk_usage(dest).free
    if needed and free < needed:
        LOG.warning("%s has %.1f GB free but %.1f GB are still to download (and as much again to extract)",
                    dest, free / 1e9, needed / 1e9)


def process_entry(entry: Entry, opts: Options, summary: Summary, *, subdir: str = "", depth: int = 2) -> None:
    """Download, verify and (unless ``opts.skip_extract``) extract one archive, skipping stamped steps.

    The archive, its ``.part``/``.bad`` companions and the stamps live in ``opts.dest``; members are
    extracted into ``opts.dest / subdir`` (for archives without a top folder of their own).  An entry
    without an md5 is downloaded unchecked with a warning and never stamped verified.
    """
    dest = opts.dest
    archive = dest / entry.filename
    part = archive.with_name(archive.name + ".part")
    bad = archive.with_name(archive.name + ".bad")

    if not opts.skip_extract and _extracted(entry, dest, accept_unverified=opts.skip_checksum):
        LOG.info("%s: already extracted", entry.name)
        summary.skipped.append(entry.name)
        return

    if not _verified(entry, archive, dest):
        source = archive
        if not archive.is_file():
            if opts.skip_download:
                hint = f" ({part.name} exists: re-run without --skip_download to finish it)" if part.exists() else ""
                raise DownloadError(f"{entry.name}: {archive} is missing and --skip_download was given{hint}")
            url = mirror_url(entry.url, opts.mirror)
            have = part.stat().st_size if part.exists() else 0
            LOG.info("%s: downloading %s%s", entry.name, url, f" (resuming at byte {have})" if have else "")
            _warn_if_low_space(dest, entry.size - have if entry.size else None)
            download_with_resume(url, part, entry.size, timeout=opts.timeout, retries=opts.retries,
                                 retry_wait=opts.retry_wait, progress=opts.progress)
            summary.downloaded.append(entry.name)
            source = part
        if opts.skip_checksum or entry.md5 is None:
            if opts.skip_checksum:
                LOG.warning("%s: md5 not checked (--skip_checksum)", entry.name)
            else:
                LOG.warning("%s: WARNING the file list gives no md5 for %s, so its integrity is NOT checked; "
                            "add the md5 to the csv once it is known", entry.name, archive.name)
            if entry.size is not None and source.stat().st_size != entry.size:
                LOG.warning("%s: %s has %d bytes, the csv says %d", entry.name, source.name,
                            source.stat().st_size, entry.size)
            os.replace(source, archive)
        else:
            LOG.info("%s: checking md5 of %s", entry.name, source.name)
            actual = md5_of_file(source, progress=opts.progress)
            if actual != entry.md5:
                os.replace(source, bad)
                raise DownloadError(
                    f"{entry.name}: md5 mismatch for {archive.name}: expected {entry.md5}, got {actual}; "
                    f"the file was kept as {bad} for inspection. Re-run to download it again from the start, "
                    f"or add --mirror URL to use another server.")
            os.replace(source, archive)
            atomic_write_json(_stamp(dest, entry.name, "verified"),
                              {"file": archive.name, "md5": actual, "size": archive.stat().st_size})
            summary.verified.append(entry.name)
    else:
        LOG.info("%s: %s already verified", entry.name, archive.name)
        if opts.skip_extract:
            summary.skipped.append(entry.name)

    if opts.skip_extract:
        return
    target = dest / subdir if subdir else dest
    LOG.info("%s: extracting %s into %s", entry.name, archive.name, target)
    paths = safe_extract(archive, target, progress=opts.progress, depth=depth)
    if subdir:
        paths = [posixpath.join(Path(subdir).as_posix(), p) for p in paths] or [Path(subdir).as_posix()]
    verified = _verified(entry, archive, dest)
    atomic_write_json(_stamp(dest, entry.name, "extracted"),
                      {"file": archive.name, "md5": entry.md5 if verified else None, "paths": paths})
    summary.extracted.append(entry.name)
    if opts.remove_archives:
        archive.unlink()
        _stamp(dest, entry.name, "verified").unlink(missing_ok=True)
        LOG.info("%s: removed %s", entry.name, archive.name)


def run_entries(entries: Sequence[Entry], opts: Options,
                process: Callable[[Entry, Options, Summary], None] = process_entry) -> int:
    """Process every entry, going on after a failed one; log the summary; return 0, 1 or 130."""
    summary = Summary()
    try:
        opts.dest.mkdir(parents=True, exist_ok=True)
        for entry in entries:
            try:
                process(entry, opts, summary)
            except DownloadError as e:
                # Keep going: one bad archive should not hold back the others.
                LOG.error("%s", e)
                summary.failed.append(entry.name)
    except KeyboardInterrupt:
        LOG.error("interrupted; run the same command again to resume")
        return 130
    except OSError as e:
        LOG.error("%s: %s", getattr(e, "filename", None) or opts.dest, e.strerror or e)
        return 1
    LOG.info("%s", summary.line())
    return 1 if summary.failed else 0


# ----------------------------------------------------------------------------------------------
# command line


def add_download_arguments(p: argparse.ArgumentParser, mirror_example: str) -> None:
    """The options every downloader shares (everything but the file list and the selection)."""
    p.add_argument("--dest", type=Path, required=True, help="folder for archives and the extracted corpus")
    p.add_argument("--mirror", default=None,
                   help=f"base URL replacing the folder of each csv URL, e.g. {mirror_example}")
    p.add_argument("--skip_download", action="store_true", help="use only archives already in --dest")
    p.add_argument("--skip_checksum", action="store_true",
                   help="do not check md5; nothing is stamped verified, so a later run without this flag "
                        "checks the archive (and extracts it again)")
    p.add_argument("--skip_extract", action="store_true", help="download and verify only")
    keep = p.add_mutually_exclusive_group()
    keep.add_argument("--keep_archives", dest="remove_archives", action="store_false",
                      help="keep each archive after extraction (default)")
    keep.add_argument("--remove_archives", dest="remove_archives", action="store_true",
                      help="delete each archive once it is extracted")
    p.set_defaults(remove_archives=False)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a retry (default: 60)")
    p.add_argument("--retries", type=int, default=5,
                   help="attempts in a row without progress before giving up (default: 5)")
    p.add_argument("--retry_wait", type=float, default=2.0,
                   help="first backoff in seconds, doubled after each failure, at most 60 (default: 2)")
    p.add_argument("--no_progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def check_download_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject values argparse cannot check by itself (exits with code 2 through ``p.error``)."""
    if args.mirror and not re.match(r"^https?://", args.mirror):
        p.error(f"--mirror must be an http:// or https:// URL, got {args.mirror!r}")
    if args.retries < 0:
        p.error("--retries must be >= 0")


def options_from_args(args: argparse.Namespace, **changes) -> Options:
    """Options from the shared arguments; progress bars only on rank 0."""
    opts = Options(dest=args.dest, mirror=args.mirror, skip_download=args.skip_download,
                   skip_checksum=args.skip_checksum, skip_extract=args.skip_extract,
                   remove_archives=args.remove_archives, timeout=args.timeout, retries=args.retries,
                   retry_wait=args.retry_wait, progress=args.progress and current_rank() == 0)
    return replace(opts, **changes) if changes else opts

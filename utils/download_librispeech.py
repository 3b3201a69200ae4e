"""Usage: python utils/download_librispeech.py --csv utils/librispeech.csv --dest DIR
        [--subsets dev-clean,test-clean,...] [--mirror URL]
        [--skip_download] [--skip_checksum] [--skip_extract] [--remove_archives]

Download LibriSpeech archives, check their md5 and extract them safely so that the corpus lands in
``DIR/LibriSpeech/<subset>/<speaker>/<chapter>/*.flac``.

Downloads resume where they stopped (``DIR/<name>.tar.gz.part`` plus an HTTP Range request), are
retried with backoff, and become ``DIR/<name>.tar.gz`` only after the md5 matches. Small stamp files
in ``DIR/.download_state/`` record verified archives and complete extractions, so running the same
command again does no work. The csv has the columns ``subset,url,md5,size`` (``size`` may be empty;
``subset`` defaults to the archive name without ``.tar.gz``). The machinery is shared with the other
downloaders in utils/download.py.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

# Run as `python utils/download_librispeech.py`: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.log import setup_logging  # noqa: E402
# The shared machinery, re-exported here so callers of this module keep their names.
from utils.download import (DownloadError, Entry, Options, Summary, UnsafeArchiveError,  # noqa: E402,F401
                            add_download_arguments, check_download_arguments, check_member,
                            download_with_resume, files_help, md5_of_file, mirror_url, options_from_args,
                            process_entry, run_entries, safe_extract, select_entries)
from utils.download import read_csv as _read_csv  # noqa: E402

LOG = logging.getLogger("download_librispeech")

DEFAULT_CSV = Path(__file__).resolve().parent / "librispeech.csv"
FILES_HELP = files_help("  LibriSpeech/<subset> the extracted corpus\n")


def read_csv(path: Path) -> list[Entry]:
    """Parse the archive list (``subset,url,md5,size``); ``url`` and ``md5`` are required."""
    return _read_csv(path, key="subset")


def select_subsets(entries: Sequence[Entry], names: str | None) -> list[Entry]:
    """Entries named in the comma-separated ``names`` (all when None), in the order given."""
    return select_entries(entries, names, what="subset")


def process_subset(entry: Entry, opts: Options, summary: Summary) -> None:
    """Download, verify and extract one subset, skipping every step a stamp says is done."""
    process_entry(entry, opts, summary, depth=2)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description="Download, md5-check and safely extract LibriSpeech.",
                                epilog=FILES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", type=Path, default=DEFAULT_CSV,
                   help="archive list with columns subset,url,md5,size (default: %(default)s)")
    p.add_argument("--subsets", default=None,
                   help="comma-separated subsets, e.g. dev-clean,test-clean (default: every row of --csv)")
    add_download_arguments(p, mirror_example="https://us.openslr.org/resources/12")
    args = p.parse_args(argv)
    check_download_arguments(p, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Process every selected subset; return 0, 1 (a subset failed), 2 (bad arguments) or 130."""
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        entries = select_subsets(read_csv(args.csv), args.subsets)
    except (DownloadError, ValueError) as e:
        LOG.error("%s", e)
        return 2
    return run_entries(entries, options_from_args(args), process_subset)


if __name__ == "__main__":
    sys.exit(main())

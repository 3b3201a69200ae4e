"""Usage: python utils/download_speech_commands.py --dest DIR [--version 1|2] [--mirror URL]
        [--skip_download] [--skip_checksum] [--skip_extract] [--remove_archives]
        [--arm_models | --arm_only] [--arm_mirror URL] [--csv utils/speech_commands.csv] [--arm_csv utils/arm_kws.csv]

Download the Speech Commands archive of the chosen version (default 2), check its md5 and extract it
safely into ``DIR/speech_commands_v0.0N/`` (the archives have no top folder of their own):
``<word>/<speaker>_nohash_<n>.wav``, ``_background_noise_/``, ``validation_list.txt``,
``testing_list.txt``.  Then convert it with
``python utils/convert_speech_commands.py --input_dir DIR/speech_commands_v0.0N --output_dir OUT``.

``--arm_models`` also fetches the files listed in ``--arm_csv`` (columns ``name,url,md5,size``: ARM's
DS-CNN frozen graphs and their labels) into ``DIR/arm_kws/``; a row without an md5 is downloaded
with a warning that it was not checked.  ``--arm_only`` fetches those files and not the dataset.

Downloads resume where they stopped, are retried with backoff and get their final name only once
the md5 matches; stamps in ``DIR/.download_state/`` make a repeated run do nothing (see
utils/download.py, shared with utils/download_librispeech.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Sequence

# Run as `python utils/download_speech_commands.py`: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.log import setup_logging  # noqa: E402
from utils.download import (DownloadError, Entry, Options, Summary, add_download_arguments,  # noqa: E402
                            check_download_arguments, files_help, options_from_args, process_entry, read_csv,
                            run_entries)

LOG = logging.getLogger("download_speech_commands")

HERE = Path(__file__).resolve().parent
DEFAULT_CSV = HERE / "speech_commands.csv"
DEFAULT_ARM_CSV = HERE / "arm_kws.csv"
ARM_DIR = "arm_kws"
VERSIONS = (1, 2)
FILES_HELP = files_help("  speech_commands_v0.0N/  the extracted corpus (one folder per word)\n"
                        "  arm_kws/             with --arm_models: ARM's DS-CNN files (and their own stamps)\n")


def dataset_name(version: int) -> str:
    """The csv name (and extraction folder) of a Speech Commands version: ``speech_commands_v0.0N``."""
    if version not in VERSIONS:
        raise ValueError(f"Speech Commands version must be one of {VERSIONS}, got {version}")
    return f"speech_commands_v0.0{version}"


def select_version(entries: Sequence[Entry], version: int) -> Entry:
    """The csv row of ``version``; ValueError naming the rows when it is missing."""
    name = dataset_name(version)
    for entry in entries:
        if entry.name == name:
            return entry
    raise ValueError(f"no row named {name!r} in the csv; rows: {', '.join(e.name for e in entries)}")


def read_arm_csv(path: Path) -> list[Entry]:
    """ARM's file list (``name,url,md5,size``); md5 may be empty (checked files are preferred)."""
    if not path.is_file():
        raise DownloadError(f"--arm_models needs the file list {path} (columns name,url,md5,size), "
                            "which does not exist")
    entries = read_csv(path, key="name", require_md5=False)
    names = [e.filename for e in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DownloadError(f"{path}: several rows download to the same file name: {', '.join(duplicates)}")
    return entries


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description="Download, md5-check and safely extract Speech Commands.",
                                epilog=FILES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", type=int, choices=VERSIONS, default=2,
                   help="dataset version: 1 (v0.01, 30 words) or 2 (v0.02, 35 words; default)")
    p.add_argument("--csv", type=Path, default=DEFAULT_CSV,
                   help="archive list with columns name,url,md5,size (default: %(default)s)")
    add_download_arguments(p, mirror_example="http://storage.googleapis.com/download.tensorflow.org/data")
    arm = p.add_mutually_exclusive_group()
    arm.add_argument("--arm_models", action="store_true",
                     help=f"also fetch the files of --arm_csv (ARM's DS-CNN frozen graphs) into DEST/{ARM_DIR}/")
    arm.add_argument("--arm_only", action="store_true", help="fetch the files of --arm_csv, not the dataset")
    p.add_argument("--arm_csv", type=Path, default=DEFAULT_ARM_CSV,
                   help="file list of --arm_models, columns name,url,md5,size (default: %(default)s)")
    p.add_argument("--arm_mirror", default=None,
                   help="base URL replacing the folder of each --arm_csv URL (--mirror applies to the dataset only)")
    args = p.parse_args(argv)
    check_download_arguments(p, args)
    if args.arm_mirror and not args.arm_mirror.startswith(("http://", "https://")):
        p.error(f"--arm_mirror must be an http:// or https:// URL, got {args.arm_mirror!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Fetch the dataset (and ARM's files); return 0, 1 (a file failed), 2 (bad arguments) or 130."""
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        dataset = [] if args.arm_only else [select_version(read_csv(args.csv, key="name"), args.version)]
        arm = read_arm_csv(args.arm_csv) if args.arm_models or args.arm_only else []
    except (DownloadError, ValueError) as e:
        LOG.error("%s", e)
        return 2
    arm_set = set(arm)

    def process(entry: Entry, opts: Options, summary: Summary) -> None:
        if entry in arm_set:
            # Plain files, not archives: downloaded and checked only, into their own folder.
            arm_opts = dataclasses.replace(opts, dest=opts.dest / ARM_DIR, mirror=args.arm_mirror,
                                           skip_extract=True, remove_archives=False)
            arm_opts.dest.mkdir(parents=True, exist_ok=True)
            process_entry(entry, arm_opts, summary)
        else:
            process_entry(entry, opts, summary, subdir=entry.name, depth=1)

    return run_entries([*dataset, *arm], options_from_args(args), process)


if __name__ == "__main__":
    sys.exit(main())

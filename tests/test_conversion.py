"""utils/convert_librispeech.py: layout in, wav + NVIDIA-style manifest out; skip-and-report; resume."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from src.data.librispeech import convert_librispeech
from src.data.manifest import ManifestError, read_manifest
from tests.conftest import speech_like, write_librispeech_folder

REPO = Path(__file__).resolve().parents[1]


def test_converts_every_utterance_once(small_corpus, tmp_path):
    out = tmp_path / "out"
    report = convert_librispeech(small_corpus, out / "dev-clean-wav", out / "dev-clean.json", parallel=2,
                                 progress=False)
    utts = read_manifest(out / "dev-clean.json")
    assert report.converted == 8 and not report.skipped
    assert sorted(u.utt_id for u in utts) == sorted(p.stem for p in small_corpus.rglob("*.flac"))
    for u in utts:
        src = next(small_corpus.rglob(f"{u.utt_id}.flac"))
        expected, _ = sf.read(src, dtype="int16")
        got, sr = sf.read(u.audio_path, dtype="int16")
        assert sr == 16000 and np.array_equal(got, expected)  # 16 kHz 16-bit input is copied exactly
        assert u.num_samples == len(got) and u.duration == pytest.approx(len(got) / 16000)
    entry = json.loads((out / "dev-clean.json").read_text())[0]
    assert set(entry) == {"transcript", "original_duration", "original_num_samples", "files"}
    assert entry["files"][0]["fname"].startswith("dev-clean-wav/")  # relative to the manifest's folder
    assert {u.transcript for u in utts} >= {"hello world", "it's a fine day"}


def test_resampling_downmix_and_speed_copies(tmp_path):
    stereo = np.stack([speech_like(44100, 44100, 1), speech_like(44100, 44100, 2)], axis=1)
    root = write_librispeech_folder(tmp_path / "in", [("1-2-0000", "STEREO AT 44 K", stereo, 44100),
                                                      ("1-2-0001", "EIGHT K", speech_like(8000, 8000, 3), 8000)])
    report = convert_librispeech(root, tmp_path / "wav", tmp_path / "m.json", speeds=[0.9, 1.1], progress=False)
    assert report.converted == 2
    utts = read_manifest(tmp_path / "m.json", speeds=None)
    assert len(utts) == 6
    by = {(u.utt_id.split("_")[0], u.speed): u for u in utts}
    assert by[("1-2-0000", 1.0)].transcript == "stereo at forty four k"
    base = by[("1-2-0000", 1.0)].num_samples
    assert base == 16000
    assert by[("1-2-0000", 0.9)].num_samples == round(base / 0.9)
    assert by[("1-2-0000", 1.1)].num_samples == round(base / 1.1)
    for u in utts:
        info = sf.info(u.audio_path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames == u.num_samples
    assert read_manifest(tmp_path / "m.json")[0].speed == 1.0  # default keeps only originals


def test_bad_inputs_are_skipped_and_reported(small_corpus, tmp_path, caplog):
    chapter = small_corpus / "100" / "10"
    (chapter / "100-10-0000.flac").write_bytes(b"not audio")                 # corrupt
    (small_corpus / "101" / "11" / "101-11-0007.flac").unlink()              # missing
    sf.write(chapter / "100-10-0009.flac", np.zeros(0, np.float32), 16000)  # empty
    trans = chapter / "100-10.trans.txt"
    trans.write_text(trans.read_text() + "100-10-0009 EMPTY FILE\n100-10-0010 BAD*CHAR\n100-10-0011\n"
                     "100-10-0001 DUPLICATE ID\n")
    report = convert_librispeech(small_corpus, tmp_path / "wav", tmp_path / "m.json", progress=False)
    assert len(report.entries) == 6
    assert report.skipped == {"unreadable audio": 2, "missing audio": 1, "transcript": 1,
                              "no transcript": 1, "duplicate id": 1}
    messages = caplog.text
    assert f"{trans}:3" in messages and "100-10-0000.flac" in messages  # names the file and line
    assert f"{trans}:5" in messages and "'*'" in messages
    assert len(read_manifest(tmp_path / "m.json")) == 6


def test_resume_reuses_written_files(small_corpus, tmp_path):
    args = (small_corpus, tmp_path / "wav", tmp_path / "m.json")
    convert_librispeech(*args, progress=False)
    wav = next((tmp_path / "wav").rglob("*.wav"))
    mtime = wav.stat().st_mtime_ns
    wav2 = next(p for p in (tmp_path / "wav").rglob("*.wav") if p != wav)
    wav2.unlink()  # as if the first run had been killed before writing it
    report = convert_librispeech(*args, progress=False)
    assert (report.reused, report.converted) == (7, 1)
    assert wav.stat().st_mtime_ns == mtime and wav2.is_file()
    assert not list(tmp_path.rglob("*.tmp"))


def test_cli_end_to_end_and_errors(small_corpus, tmp_path):
    cmd = [sys.executable, str(REPO / "utils" / "convert_librispeech.py"), "--input_dir", str(small_corpus),
           "--dest_dir", str(tmp_path / "wav"), "--output_json", str(tmp_path / "m.json"), "--parallel", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "8 utterances" in run.stderr
    bad = subprocess.run(cmd[:3] + [str(tmp_path / "nowhere")] + cmd[4:], capture_output=True, text=True)
    assert bad.returncode == 1 and "input folder not found" in bad.stderr and "Traceback" not in bad.stderr


def test_malformed_manifest_names_entry(tmp_path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps([{"transcript": "a", "files": [{"fname": "x.wav"}]}]))
    with pytest.raises(ManifestError, match="entry 0"):
        read_manifest(p)


def test_upper_case_extensions_are_converted(tmp_path):
    root = write_librispeech_folder(tmp_path / "in", [("1-2-0000", "LOUD NAME", speech_like(8000, 16000, 1), 16000)],
                                    ext="FLAC")
    (root / "1" / "2" / "1-2-0042.WAV").write_bytes(b"")   # audio without a transcript line is counted too
    report = convert_librispeech(root, tmp_path / "wav", tmp_path / "m.json", progress=False)
    assert report.converted == 1 and not report.skipped
    assert [u.utt_id for u in read_manifest(tmp_path / "m.json")] == ["1-2-0000"]


def test_lower_sample_rates_are_upsampled_with_a_warning_and_counted(tmp_path, caplog):
    root = write_librispeech_folder(tmp_path / "in", [("1-2-0000", "EIGHT K", speech_like(8000, 8000, 3), 8000),
                                                      ("1-2-0001", "SIXTEEN K", speech_like(16000, 16000, 4), 16000)])
    report = convert_librispeech(root, tmp_path / "wav", tmp_path / "m.json", parallel=2, progress=False)
    assert report.upsampled == 1 and "1 upsampled" in report.summary()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len([m for m in warnings if "upsampled" in m]) == 1
    assert any("1-2-0000.flac" in m and "8000 Hz" in m for m in warnings)


def test_a_killed_conversion_leaves_no_partial_files(small_corpus, tmp_path):
    import subprocess as sp
    dead = sp.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    args = (small_corpus, tmp_path / "wav", tmp_path / "m.json")
    convert_librispeech(*args, progress=False)
    wav = next((tmp_path / "wav").rglob("*.wav"))
    partial = wav.with_name(f"{wav.name}.{dead.pid}.tmp")     # a worker killed while writing
    partial.write_bytes(b"RIFF")
    wav.unlink()
    report = convert_librispeech(*args, progress=False)
    assert (report.reused, report.converted) == (7, 1) and not partial.exists() and wav.is_file()

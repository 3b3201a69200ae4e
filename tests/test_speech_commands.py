"""Speech Commands: the downloader against a local HTTP server, and the converter to keyword manifests."""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import math
import re
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from src.data import speech_commands as sc

pytestmark = pytest.mark.usefixtures("restore_logging")  # main() installs its own root handler

ROOT = Path(__file__).resolve().parents[1]
FAKE_BASE = "http://mirror.invalid/data"  # never resolves: a test that ignored --mirror fails fast


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "utils" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


dsc = _load("download_speech_commands")
csc = _load("convert_speech_commands")


# ------------------------------------------------------------------------------ local HTTP server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server
        name = self.path.rsplit("/", 1)[-1]
        range_header = self.headers.get("Range")
        with srv.lock:
            srv.requests.append((name, range_header))
        data = srv.files.get(name)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        m = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        start = int(m.group(1)) if m else 0
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.files, httpd.requests, httpd.lock = {}, [], threading.Lock()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}/data/"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def wav_bytes(seconds: float, seed: int, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    sf.write(buf, (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32), sr, format="WAV",
             subtype="PCM_16")
    return buf.getvalue()


def dataset_tar(tag: str, evil: str | None = None) -> bytes:
    """A .tar.gz laid out like the real archives: no top folder, members named ``./<word>/...``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("./LICENSE", f"licence of {tag}\n".encode())
        add("./validation_list.txt", b"yes/bbbbbbbb_nohash_0.wav\n")
        add("./testing_list.txt", b"no/cccccccc_nohash_0.wav\n")
        for i, (word, spk) in enumerate([("yes", "aaaaaaaa"), ("yes", "bbbbbbbb"), ("no", "cccccccc")]):
            add(f"./{word}/{spk}_nohash_0.wav", wav_bytes(0.5, i))
        add("./_background_noise_/white_noise.wav", wav_bytes(2.0, 9))
        if evil == "dotdot":
            add("./../evil.txt", b"pwned\n")
        elif evil == "symlink":
            info = tarfile.TarInfo("./yes/link")
            info.type, info.linkname = tarfile.SYMTYPE, "../../evil.txt"
            tar.addfile(info)
    return buf.getvalue()


def write_csv(path: Path, archives: dict[int, bytes], md5: dict[int, str] | None = None) -> Path:
    lines = ["name,url,md5,size"]
    for version, data in archives.items():
        digest = (md5 or {}).get(version, hashlib.md5(data).hexdigest())
        lines.append(f"speech_commands_v0.0{version},{FAKE_BASE}/speech_commands_v0.0{version}.tar.gz,"
                     f"{digest},{len(data)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def download(csv: Path, dest: Path, server, *extra: str) -> int:
    return dsc.main(["--csv", str(csv), "--dest", str(dest), "--mirror", server.base, "--retry_wait", "0",
                     "--timeout", "5", "--no_progress", *extra])


# ------------------------------------------------------------------------------ downloader


def test_shipped_csv_lists_both_versions():
    entries = dsc.read_csv(ROOT / "utils" / "speech_commands.csv", key="name")
    assert [e.name for e in entries] == ["speech_commands_v0.01", "speech_commands_v0.02"]
    for version, e in zip((1, 2), entries):
        assert e.url == f"http://download.tensorflow.org/data/speech_commands_v0.0{version}.tar.gz"
        assert re.fullmatch(r"[0-9a-f]{32}", e.md5) and e.size > 1_000_000_000
        assert dsc.select_version(entries, version) is e
    assert entries[0].md5 != entries[1].md5


def test_download_extracts_the_chosen_version_into_its_folder(tmp_path, server, capsys):
    v1, v2 = dataset_tar("v1"), dataset_tar("v2")
    server.files.update({"speech_commands_v0.01.tar.gz": v1, "speech_commands_v0.02.tar.gz": v2})
    csv = write_csv(tmp_path / "sc.csv", {1: v1, 2: v2})
    dest = tmp_path / "data"

    assert download(csv, dest, server) == 0  # default version 2
    root = dest / "speech_commands_v0.02"
    assert (root / "LICENSE").read_text() == "licence of v2\n"
    assert (root / "yes" / "aaaaaaaa_nohash_0.wav").is_file()
    assert (root / "_background_noise_" / "white_noise.wav").is_file()
    assert (root / "validation_list.txt").is_file()
    assert not (dest / "speech_commands_v0.01").exists() and not (dest / "yes").exists()
    assert [n for n, _ in server.requests] == ["speech_commands_v0.02.tar.gz"]

    capsys.readouterr()
    assert download(csv, dest, server) == 0  # stamped: nothing to do
    assert "skipped: speech_commands_v0.02" in capsys.readouterr().err
    assert len(server.requests) == 1

    assert download(csv, dest, server, "--version", "1") == 0
    assert (dest / "speech_commands_v0.01" / "LICENSE").read_text() == "licence of v1\n"
    assert [n for n, _ in server.requests][-1] == "speech_commands_v0.01.tar.gz"


def test_md5_mismatch_is_refused(tmp_path, server, capsys):
    data = dataset_tar("v2")
    server.files["speech_commands_v0.02.tar.gz"] = data
    csv = write_csv(tmp_path / "sc.csv", {2: data}, {2: "0" * 32})
    dest = tmp_path / "data"
    assert download(csv, dest, server) == 1
    err = capsys.readouterr().err
    assert "md5 mismatch for speech_commands_v0.02.tar.gz" in err and "Traceback" not in err
    assert (dest / "speech_commands_v0.02.tar.gz.bad").read_bytes() == data
    assert not (dest / "speech_commands_v0.02.tar.gz").exists()
    assert not (dest / "speech_commands_v0.02").exists()


def test_partial_download_is_resumed(tmp_path, server):
    data = dataset_tar("v2")
    server.files["speech_commands_v0.02.tar.gz"] = data
    csv = write_csv(tmp_path / "sc.csv", {2: data})
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "speech_commands_v0.02.tar.gz.part").write_bytes(data[:1000])
    assert download(csv, dest, server, "--skip_extract") == 0
    assert server.requests == [("speech_commands_v0.02.tar.gz", "bytes=1000-")]
    assert (dest / "speech_commands_v0.02.tar.gz").read_bytes() == data
    assert not (dest / "speech_commands_v0.02").exists()


@pytest.mark.parametrize("kind", ["dotdot", "symlink"])
def test_unsafe_members_are_refused(tmp_path, server, capsys, kind):
    data = dataset_tar("v2", evil=kind)
    server.files["speech_commands_v0.02.tar.gz"] = data
    csv = write_csv(tmp_path / "sc.csv", {2: data})
    dest = tmp_path / "data"
    assert download(csv, dest, server) == 1
    assert "refusing to extract member" in capsys.readouterr().err
    assert not (tmp_path / "evil.txt").exists() and not (dest / "evil.txt").exists()
    assert not (dest / "speech_commands_v0.02").exists()
    assert not (dest / ".download_state" / "speech_commands_v0.02.extracted.json").exists()


def test_arm_models_are_fetched_and_a_missing_md5_is_a_warning(tmp_path, server, capsys):
    data = dataset_tar("v2")
    graph, labels = b"frozen graph bytes" * 100, b"_silence_\n_unknown_\nyes\n"
    server.files.update({"speech_commands_v0.02.tar.gz": data, "DS_CNN_S.pb": graph, "labels.txt": labels})
    csv = write_csv(tmp_path / "sc.csv", {2: data})
    arm = tmp_path / "arm.csv"
    arm.write_text("name,url,md5,size\n"
                   f"DS_CNN_S,https://example.invalid/x/DS_CNN_S.pb,{hashlib.md5(graph).hexdigest()},{len(graph)}\n"
                   "labels,https://example.invalid/x/labels.txt,,\n")
    dest = tmp_path / "data"
    assert download(csv, dest, server, "--arm_models", "--arm_csv", str(arm), "--arm_mirror", server.base) == 0
    assert (dest / "arm_kws" / "DS_CNN_S.pb").read_bytes() == graph
    assert (dest / "arm_kws" / "labels.txt").read_bytes() == labels
    err = capsys.readouterr().err
    assert re.search(r"WARNING .*no md5 for labels\.txt.*NOT checked", err)
    assert "DS_CNN_S.pb" not in "".join(line for line in err.splitlines() if "NOT checked" in line)

    # A wrong md5 for a model file fails that file only.
    arm.write_text(f"name,url,md5,size\nDS_CNN_S,https://example.invalid/x/DS_CNN_M.pb,{'1' * 32},\n")
    server.files["DS_CNN_M.pb"] = b"other graph"
    assert download(csv, dest, server, "--arm_models", "--arm_csv", str(arm), "--arm_mirror", server.base) == 1
    assert "md5 mismatch for DS_CNN_M.pb" in capsys.readouterr().err


def test_arm_only_fetches_no_dataset(tmp_path, server):
    graph = b"graph" * 50
    server.files["DS_CNN_L.pb"] = graph
    arm = tmp_path / "arm.csv"
    arm.write_text(f"name,url,md5,size\nDS_CNN_L.pb,https://example.invalid/DS_CNN_L.pb,"
                   f"{hashlib.md5(graph).hexdigest()},{len(graph)}\n")
    csv = write_csv(tmp_path / "sc.csv", {2: b"never fetched"})
    assert download(csv, tmp_path / "data", server, "--arm_only", "--arm_csv", str(arm), "--arm_mirror",
                    server.base) == 0
    assert [n for n, _ in server.requests] == ["DS_CNN_L.pb"]
    assert (tmp_path / "data" / "arm_kws" / "DS_CNN_L.pb").read_bytes() == graph


@pytest.mark.skipif(not (ROOT / "utils" / "arm_kws.csv").is_file(), reason="utils/arm_kws.csv not shipped")
def test_shipped_arm_csv_reads():
    entries = dsc.read_arm_csv(ROOT / "utils" / "arm_kws.csv")
    assert {"DS_CNN_S.pb", "DS_CNN_M.pb", "DS_CNN_L.pb"} <= {e.filename for e in entries}
    assert all(e.md5 is None or re.fullmatch(r"[0-9a-f]{32}", e.md5) for e in entries)


def test_arm_models_without_a_file_list_is_a_usage_error(tmp_path, server, capsys):
    csv = write_csv(tmp_path / "sc.csv", {2: b"x"})
    assert download(csv, tmp_path / "data", server, "--arm_models", "--arm_csv", str(tmp_path / "none.csv")) == 2
    assert "none.csv" in capsys.readouterr().err
    assert server.requests == []


# ------------------------------------------------------------------------------ dataset folders


SPEAKERS = [f"{i:08x}" for i in range(0x1000a000, 0x1000a000 + 40 * 7919, 7919)]  # 40 speakers


def tone(seconds: float, seed: int, sr: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * rng.uniform(200, 800) * t) + 0.01 * rng.standard_normal(len(t))
            ).astype(np.float32)


def make_dataset(root: Path, words=("yes", "no", "up", "cat", "dog"), speakers=SPEAKERS, lists: bool = False,
                 background_seconds: float = 3.0) -> Path:
    """``len(words) × len(speakers)`` clips (0.6–1.0 s tones), two background files; optionally the
    split lists, built from the hash rule like the real ones."""
    val, test = [], []
    for w_i, word in enumerate(words):
        (root / word).mkdir(parents=True, exist_ok=True)
        for s_i, spk in enumerate(speakers):
            rel = f"{word}/{spk}_nohash_0.wav"
            sf.write(root / rel, tone(0.6 + 0.4 * ((w_i + s_i) % 5) / 4, 100 * w_i + s_i), 16000, subtype="PCM_16")
            split = sc.hash_split(rel)
            (val if split == "validation" else test if split == "test" else []).append(rel)
    bg = root / "_background_noise_"
    bg.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(("white_noise.wav", "pink_noise.wav")):
        sf.write(bg / name, 0.05 * np.random.default_rng(i).standard_normal(int(background_seconds * 16000)),
                 16000, subtype="PCM_16")
    (bg / "README.md").write_text("not audio\n")
    if lists:
        (root / "validation_list.txt").write_text("".join(f"{r}\n" for r in val))
        (root / "testing_list.txt").write_text("".join(f"{r}\n" for r in test))
    return root


def load(out: Path) -> dict[str, list[dict]]:
    return {s: json.loads((out / f"{s}.json").read_text()) for s in sc.SPLITS}


def convert(src: Path, out: Path, *extra: str) -> int:
    return csc.main(["--input_dir", str(src), "--output_dir", str(out), "--no_progress", *extra])


# ------------------------------------------------------------------------------ converter


def test_hash_split_follows_speakers_and_percentages():
    assert sc.hash_split("yes/abc_nohash_0.wav") == sc.hash_split("/x/no/abc_nohash_7.wav")
    assert sc.speaker_of("yes/abc_nohash_3.wav") == "abc" and sc.speaker_of("noise.wav") == "noise"
    names = [f"{i:08x}_nohash_0.wav" for i in range(0, 6000 * 7, 7)]
    splits = [sc.hash_split(n) for n in names]
    share = {s: splits.count(s) / len(names) for s in sc.SPLITS}
    assert abs(share["validation"] - 0.1) < 0.02 and abs(share["test"] - 0.1) < 0.02
    # The score is stable: a larger validation share keeps every validation clip there.
    wider = [sc.hash_split(n, 20, 10) for n in names]
    assert all(w == "validation" for s, w in zip(splits, wider) if s == "validation")
    assert sum(w == "validation" for w in wider) > 1.5 * sum(s == "validation" for s in splits)
    assert all(sc.hash_split(n, 0, 0) == "train" for n in names[:100])


def test_hash_split_reproduces_the_published_lists():
    # Speaker ids from the first lines of Speech Commands v0.01's validation_list.txt and testing_list.txt.
    validation = "8b775397 2643992f 060cd039 f5e5e8b0 dbb40d24 d57febf0 16db1582 6a27a9bf".split()
    testing = "2aa787cf ffa76c4a 24ad3ebe d7467392 5828dfa2 91223b83 f0ae7203 95ba4996".split()
    assert [sc.hash_split(f"cat/{s}_nohash_1.wav") for s in validation] == ["validation"] * len(validation)
    assert [sc.hash_split(f"go/{s}_nohash_0.wav") for s in testing] == ["test"] * len(testing)


def test_split_lists_are_honoured(tmp_path):
    src = make_dataset(tmp_path / "sc")
    # Lists that disagree with the hash rule: the lists win; clips in neither list are training.
    val = [f"{w}/{SPEAKERS[0]}_nohash_0.wav" for w in ("yes", "no", "up", "cat", "dog")]
    test = [f"{w}/{SPEAKERS[1]}_nohash_0.wav" for w in ("yes", "no", "up", "cat", "dog")]
    (src / "validation_list.txt").write_text("\n".join(val) + "\n")
    (src / "testing_list.txt").write_text("\n".join("./" + t for t in test) + "\n")
    out = tmp_path / "out"
    assert convert(src, out, "--wanted_words", "yes,no,up") == 0
    m = load(out)
    speakers = {s: {e["speaker"] for e in m[s] if e["label"] != "_silence_"} for s in sc.SPLITS}
    assert speakers["validation"] <= {SPEAKERS[0]} and speakers["test"] <= {SPEAKERS[1]}
    assert {e["speaker"] for e in m["validation"] if e["label"] in ("yes", "no", "up")} == {SPEAKERS[0]}
    assert len([e for e in m["train"] if e["label"] in ("yes", "no", "up")]) == 3 * (len(SPEAKERS) - 2)
    report = json.loads((out / sc.REPORT_NAME).read_text())
    assert report["split_source"] == "lists" and report["crossing_speakers"] == {}
    # Paths are relative to the manifest folder and resolve to the clips.
    clips = sc.read_keyword_manifest(out / "train.json")
    assert all(c.path.is_file() for c in clips)
    assert not Path(m["train"][0]["path"]).is_absolute()
    assert {e["label"] for e in m["train"]} == {"_silence_", "_unknown_", "yes", "no", "up"}


def test_hash_fallback_is_deterministic_and_speaker_pure(tmp_path):
    src = make_dataset(tmp_path / "sc")
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    assert convert(src, out_a, "--seed", "3", "--wanted_words", "yes,no,up") == 0
    assert convert(src, out_b, "--seed", "3", "--wanted_words", "yes,no,up", "--jobs", "1") == 0
    for split in sc.SPLITS:
        assert (out_a / f"{split}.json").read_bytes() == (out_b / f"{split}.json").read_bytes()
    m = load(out_a)
    split_of_speaker: dict[str, set[str]] = {}
    for split, entries in m.items():
        for e in entries:
            if e["label"] != "_silence_":
                assert sc.hash_split(e["path"]) == split
                split_of_speaker.setdefault(e["speaker"], set()).add(split)
    assert all(len(v) == 1 for v in split_of_speaker.values())
    assert json.loads((out_a / sc.REPORT_NAME).read_text())["split_source"] == "hash"
    # Another seed draws other silence crops.
    assert convert(src, tmp_path / "c", "--seed", "4", "--wanted_words", "yes,no,up") == 0
    assert load(tmp_path / "c")["train"] != m["train"]


def test_silence_and_unknown_are_sampled_like_tensorflow(tmp_path):
    src = make_dataset(tmp_path / "sc", words=("yes", "no", "cat", "dog", "bird", "tree"))
    out = tmp_path / "out"
    assert convert(src, out, "--wanted_words", "yes,no", "--split_by", "hash") == 0
    m = load(out)
    lengths = {n: sf.info(src / "_background_noise_" / n).frames for n in ("white_noise.wav", "pink_noise.wav")}
    for split, entries in m.items():
        known = [e for e in entries if e["label"] in ("yes", "no")]
        silence = [e for e in entries if e["label"] == "_silence_"]
        unknown = [e for e in entries if e["label"] == "_unknown_"]
        assert known, split
        assert len(silence) == math.ceil(len(known) * 0.1)
        assert len(unknown) == math.ceil(len(known) * 0.1)
        assert 0.08 <= len(silence) / len(entries) <= 0.12 or len(entries) < 40
        assert len({e["path"] for e in unknown}) == len(unknown)  # drawn without replacement
        assert all(e["word"] in ("cat", "dog", "bird", "tree") and "word" not in k for e in unknown for k in known)
        for e in silence:
            name = Path(e["path"]).name
            start = e["offset"] * 16000  # a whole number of samples
            assert abs(start - round(start)) < 1e-6 and 0 <= round(start) <= lengths[name] - 16000
            assert e["duration"] == 1.0 and e["speaker"] == "_background_noise_"
    # A silence example is the crop of its background file.
    clip = next(c for c in sc.read_keyword_manifest(out / "train.json") if c.label == "_silence_")
    noise, _ = sf.read(clip.path, dtype="float32")
    start = int(round(clip.offset * 16000))
    np.testing.assert_array_equal(sc.load_clip(clip), noise[start:start + 16000])
    speech = next(c for c in sc.read_keyword_manifest(out / "train.json") if c.label == "yes")
    audio = sc.load_clip(speech)
    assert audio.shape == (16000,) and (speech.duration == 1.0 or audio[-1] == 0.0)


def test_unusable_clips_are_skipped_and_reported(tmp_path, capsys):
    src = make_dataset(tmp_path / "sc", words=("yes", "no"), speakers=SPEAKERS[:10])
    (src / "yes" / "bad00001_nohash_0.wav").write_bytes(b"RIFF....not a wav at all")
    (src / "yes" / "bad00002_nohash_0.wav").write_bytes(b"")
    sf.write(src / "yes" / "bad00003_nohash_0.wav", np.zeros(0, np.float32), 16000, subtype="PCM_16")
    sf.write(src / "yes" / "bad00004_nohash_0.wav", tone(1.0, 1, 8000), 8000, subtype="PCM_16")
    sf.write(src / "no" / "bad00005_nohash_0.wav", np.stack([tone(1.0, 2)] * 2, 1), 16000, subtype="PCM_16")
    for i in range(6, 13):
        sf.write(src / "no" / f"bad{i:05d}_nohash_0.wav", tone(1.5, i), 16000, subtype="PCM_16")
    sf.write(src / "no" / "okay0001_nohash_0.wav", tone(1.005, 3), 16000, subtype="PCM_16")  # within tolerance
    out = tmp_path / "out"
    assert convert(src, out, "--wanted_words", "yes,no") == 0
    report = json.loads((out / sc.REPORT_NAME).read_text())
    counts = {k: len(v) for k, v in report["skipped"].items() if v}
    assert counts == {"unreadable": 2, "empty": 1, "sample_rate": 1, "channels": 1, "too_long": 7}
    err = capsys.readouterr().err
    assert "skipped 7 clips (too_long): no/bad00006_nohash_0.wav" in err and "and 2 more" in err
    assert "skipped 1 clips (sample_rate): yes/bad00004_nohash_0.wav" in err
    assert re.search(r"keyword manifests: train \d+ .*skipped 12 \(unreadable 2, empty 1, sample_rate 1, "
                     r"channels 1, too_long 7\)", err)
    used = {e["path"].split("/sc/", 1)[1] for entries in load(out).values() for e in entries}
    assert not any("bad" in p for p in used)
    assert "no/okay0001_nohash_0.wav" in used


def test_wanted_words_option_and_all_words(tmp_path, capsys):
    src = make_dataset(tmp_path / "sc", speakers=SPEAKERS[:20])
    assert convert(src, tmp_path / "a", "--wanted_words", "cat,YES") == 0
    labels = {e["label"] for entries in load(tmp_path / "a").values() for e in entries}
    assert labels == {"_silence_", "_unknown_", "cat", "yes"}
    words_of_unknown = {e["word"] for entries in load(tmp_path / "a").values() for e in entries
                        if e["label"] == "_unknown_"}
    assert words_of_unknown <= {"no", "up", "dog"} and words_of_unknown

    assert convert(src, tmp_path / "b", "--wanted_words", "all") == 0
    labels = {e["label"] for entries in load(tmp_path / "b").values() for e in entries}
    assert labels == {"_silence_", "yes", "no", "up", "cat", "dog"}  # no other words left for _unknown_

    capsys.readouterr()
    assert convert(src, tmp_path / "c", "--wanted_words", "yes,sheila") == 1
    err = capsys.readouterr().err
    assert "sheila not found" in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()


def test_outputs_are_written_atomically(tmp_path):
    src = make_dataset(tmp_path / "sc", speakers=SPEAKERS[:12])
    out = tmp_path / "out"
    assert convert(src, out, "--wanted_words", "yes,no,up") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["conversion_report.json", "test.json", "train.json", "validation.json"]
    # A failing conversion (no background noise for _silence_) leaves the earlier outputs as they were.
    for f in (src / "_background_noise_").glob("*.wav"):
        f.unlink()
    assert convert(src, out, "--wanted_words", "yes,no,up") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert convert(src, out, "--wanted_words", "yes,no,up", "--silence_percentage", "0") == 0
    assert not list(out.glob("*.tmp"))
    assert all(e["label"] != "_silence_" for entries in load(out).values() for e in entries)


def test_speakers_crossing_splits_are_reported(tmp_path, capsys):
    src = make_dataset(tmp_path / "sc", words=("yes", "no"), speakers=SPEAKERS[:10])
    spk = SPEAKERS[2]
    (src / "validation_list.txt").write_text(f"yes/{spk}_nohash_0.wav\nyes/missing0_nohash_0.wav\n")
    (src / "testing_list.txt").write_text(f"yes/{spk}_nohash_0.wav\n")
    out = tmp_path / "out"
    assert convert(src, out, "--wanted_words", "yes,no") == 0
    report = json.loads((out / sc.REPORT_NAME).read_text())
    assert report["crossing_speakers"] == {spk: ["train", "test"]}
    assert report["list_problems"] == {"validation list entry without a clip": ["yes/missing0_nohash_0.wav"],
                                       "in both lists (kept in test)": [f"yes/{spk}_nohash_0.wav"]}
    err = capsys.readouterr().err
    assert f"1 speakers have clips in more than one split" in err and spk in err


def test_large_sets_are_read_in_parallel(tmp_path, monkeypatch):
    monkeypatch.setattr(sc, "_PARALLEL_FROM", 10)
    src = make_dataset(tmp_path / "sc", words=("yes", "no"), speakers=SPEAKERS[:12])
    (src / "no" / "broken00_nohash_0.wav").write_bytes(b"junk")
    serial = sc.convert_speech_commands(src, tmp_path / "a", ["yes"], jobs=1, progress=False)
    parallel = sc.convert_speech_commands(src, tmp_path / "b", ["yes"], jobs=2, progress=False)
    assert parallel.skipped == serial.skipped and parallel.counts == serial.counts
    assert (tmp_path / "a" / "train.json").read_bytes() == (tmp_path / "b" / "train.json").read_bytes()

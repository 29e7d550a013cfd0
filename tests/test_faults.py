"""Faults and hostile files: damaged shards, checkpoints and tokenizers are detected and named; nothing
we load runs code; interrupted saves, exports and prunes are completed or cleaned; a full disk is a
one-line error that a rerun recovers from."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from helpers import clue_corpus, prepare, run_training, scalars, tree_bytes, write_shards
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from data_prep.__main__ import main as data_main
from data_prep.errors import UserError
from data_prep.shards import ShardDir
from pretrain.data import load_shards


class Planted:
    """A pickle that runs code when it is unpickled (it creates ``marker``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def fresh_shards(shards, tmp_path) -> Path:
    """A private copy of the session's shards, free to damage."""
    return Path(shutil.copytree(shards, tmp_path / "shards"))


def first_arrow(root: Path) -> Path:
    return sorted((root / "train").glob("*.arrow"))[0]


# -- shards -----------------------------------------------------------------------------------------------


def test_the_manifest_records_the_size_and_sha256_of_every_file(shards):
    manifest = ShardDir(shards).read_manifest()
    files = manifest["files"]
    assert "tokenizer/vocab.txt" in files and "train/state.json" in files
    assert {f"train/{p.name}" for p in (shards / "train").glob("*.arrow")} <= set(files)
    assert ShardDir(shards).verify(manifest, hashes=True) == len(files)


def test_a_truncated_shard_is_named_in_one_line_by_inspect_and_training(fresh_shards, capsys):
    arrow = first_arrow(fresh_shards)
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    for argv in (["inspect", str(fresh_shards)], ["inspect", str(fresh_shards), "--verify"]):
        assert data_main(argv) == 2
        err = capsys.readouterr().err
        assert arrow.name in err and "damaged" in err and err.count("\n") == 1
    with pytest.raises(UserError, match=f"{arrow.name} has .* bytes"):
        load_shards(str(fresh_shards))


def test_a_changed_id_inside_the_vocab_is_caught_by_the_hashes(fresh_shards, capsys):
    arrow = first_arrow(fresh_shards)
    data = bytearray(arrow.read_bytes())
    data[-300] ^= 0x01  # one bit of one id: same size, still a valid Arrow file
    arrow.write_bytes(bytes(data))
    load_shards(str(fresh_shards))  # sizes only (the default): not noticed
    with pytest.raises(UserError, match=f"{arrow.name} does not match its sha256"):
        load_shards(str(fresh_shards), verify="full")
    assert data_main(["inspect", str(fresh_shards), "--verify"]) == 2
    assert "does not match its sha256" in capsys.readouterr().err


def plant_id(shards: ShardDir, arrow: Path, row: int, value: int) -> None:
    """Set one id of ``row`` in ``arrow`` and record the digests, as a buggy writer would have."""
    table = pa.ipc.open_stream(arrow.read_bytes()).read_all()
    rows = table.column("input_ids").to_pylist()
    rows[row][3] = value
    bad = table.set_column(0, "input_ids", pa.array(rows, type=table.schema.field("input_ids").type))
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(bad)
    manifest = shards.read_manifest()
    manifest["files"] = shards.digests()
    shards.manifest_file.write_text(json.dumps(manifest))


def test_an_id_outside_the_vocab_is_named_with_its_file_and_row(fresh_shards):
    arrow = first_arrow(fresh_shards)
    plant_id(ShardDir(fresh_shards), arrow, 5, 60_000)
    with pytest.raises(UserError, match=rf"{arrow.name} row 5: id 60000 is outside the vocab"):
        load_shards(str(fresh_shards), verify="full")


def test_the_row_of_a_bad_id_counts_from_the_start_of_its_own_file(tmp_path, vocab):
    for i in range(2):
        clue_corpus(tmp_path / "in" / f"f{i}.txt", 60, seed=50 + i)
    out = tmp_path / "out"
    assert prepare(vocab, [tmp_path / "in"], out, "--seq-length", "48", "--valid-ratio", "0") == 0
    arrows = sorted((out / "train").glob("*.arrow"))
    assert len(arrows) == 2
    plant_id(ShardDir(out), arrows[1], 2, 60_000)
    with pytest.raises(UserError, match=rf"{arrows[1].name} row 2: id 60000 is outside the vocab"):
        load_shards(str(out), verify="full")


@pytest.mark.parametrize("swap", ["mask_in_tokenizer_json", "added_file", "vocab_line"])
def test_a_swapped_tokenizer_file_is_refused(fresh_shards, swap):
    shards = ShardDir(fresh_shards)
    tok_dir = shards.tokenizer_dir
    if swap == "added_file":
        (tok_dir / "special_tokens_map.json").write_text('{"mask_token": "的"}')
        match = "special_tokens_map.json was added after the shards were made"
    elif swap == "vocab_line":
        lines = shards.vocab_file.read_text().splitlines()
        lines[4], lines[10] = lines[10], lines[4]  # [MASK] swapped with a character
        shards.vocab_file.write_text("\n".join(lines) + "\n")
        match = "vocab the shards were made with"
    else:
        tokenizer_json = tok_dir / "tokenizer.json"
        data = json.loads(tokenizer_json.read_text())
        vocab = data["model"]["vocab"]
        other = next(t for t in vocab if not t.startswith("["))
        vocab["[MASK]"], vocab[other] = vocab[other], vocab["[MASK]"]
        tokenizer_json.write_text(json.dumps(data, ensure_ascii=False))
        match = "tokenizer.json (has .* bytes|does not match its sha256)"
    with pytest.raises(UserError, match=match):
        load_shards(str(fresh_shards))


def test_the_special_ids_must_equal_the_manifests(fresh_shards):
    shards = ShardDir(fresh_shards)
    manifest = shards.read_manifest()
    manifest["special_ids"]["[MASK]"] = 9
    with pytest.raises(UserError, match="is not the one the shards were made with"):
        shards.load_tokenizer(manifest)


def test_a_failed_merge_leaves_nothing_and_a_damaged_part_is_refused(tmp_path, vocab, capsys):
    corpus = tmp_path / "in"
    clue_corpus(corpus / "a.txt", 60, seed=3)
    clue_corpus(corpus / "b.txt", 60, seed=4)
    parts = [tmp_path / f"p{i}" for i in (1, 2)]
    for i, part in enumerate(parts, 1):
        assert prepare(vocab, [corpus], part, "--seq-length", "48", "--part", f"{i}/2") == 0
    out = tmp_path / "merged"
    state = parts[1] / "train" / "state.json"
    good = state.read_text()
    state.write_text(good.replace('"filename": "', '"filename": "../../'))  # a path out of the directory
    capsys.readouterr()
    assert data_main(["merge", "--output", str(out), *map(str, parts)]) == 2
    assert "state.json" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".tmp-*")) and not (tmp_path.parent / "x").exists()
    state.write_text(good)
    arrow = first_arrow(parts[0])
    arrow.write_bytes(arrow.read_bytes()[:-10])
    assert data_main(["merge", "--output", str(out), *map(str, parts)]) == 2
    assert arrow.name in capsys.readouterr().err and not out.exists()
    shutil.rmtree(parts[0])
    assert prepare(vocab, [corpus], parts[0], "--seq-length", "48", "--part", "1/2") == 0
    assert data_main(["merge", "--output", str(out), *map(str, parts)]) == 0  # the rerun just works
    assert ShardDir(out).verify(ShardDir(out).read_manifest(), hashes=True) > 0


@pytest.fixture
def interrupted_prep(tmp_path, vocab, monkeypatch) -> tuple[Path, Path, Path]:
    """(corpus, a finished reference, the same job stopped just before it finished: every unit marked)."""
    import data_prep.job

    corpus = tmp_path / "in"
    for i in range(3):
        clue_corpus(corpus / f"f{i}.txt", 80, seed=20 + i)
    ref, out = tmp_path / "ref", tmp_path / "out"
    args = ("--seq-length", "48", "--unit-mb", "0.002")
    assert prepare(vocab, [corpus], ref, *args) == 0
    with monkeypatch.context() as patch:
        patch.setattr(data_prep.job, "finish", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
        assert prepare(vocab, [corpus], out, *args) == 130
    assert len(list((out / ".prep" / "units").iterdir())) >= 4
    return corpus, ref, out


def test_resume_redoes_units_whose_marker_is_garbled_or_whose_file_is_gone(interrupted_prep, vocab, capsys):
    corpus, ref, out = interrupted_prep
    markers = sorted((out / ".prep" / "units").iterdir())
    markers[0].write_text("{garbage")
    named = json.loads(markers[1].read_text())["files"]["train"]
    (out / "train" / named).unlink()
    capsys.readouterr()
    assert prepare(vocab, [corpus], out, "--seq-length", "48", "--unit-mb", "0.002", "--resume") == 0
    err = capsys.readouterr().err
    assert f"unit {markers[0].stem} is unusable" in err and f"{named} is missing" in err
    assert tree_bytes(out) == tree_bytes(ref)


def test_resume_does_not_depend_on_how_the_input_path_is_spelled(interrupted_prep, vocab, monkeypatch):
    corpus, ref, out = interrupted_prep
    monkeypatch.chdir(corpus.parent)
    assert (
        prepare(vocab, [Path(corpus.name)], out, "--seq-length", "48", "--unit-mb", "0.002", "--resume") == 0
    )
    ref_manifest, manifest = (json.loads((d / "manifest.json").read_text()) for d in (ref, out))
    assert (
        manifest["plan_sha256"] == ref_manifest["plan_sha256"] and manifest["files"] == ref_manifest["files"]
    )


def test_a_prepare_killed_before_its_plan_or_after_its_manifest_needs_no_rm(tmp_path, vocab):
    corpus = tmp_path / "in"
    clue_corpus(corpus / "a.txt", 40, seed=5)
    out = tmp_path / "out"
    for sub in (".prep/units", "train", "valid"):  # what exists when a kill comes before plan.json
        (out / sub).mkdir(parents=True)
    assert prepare(vocab, [corpus], out, "--seq-length", "48") == 0  # no --resume needed: nothing to keep
    (out / ".prep" / "units").mkdir(parents=True)  # a kill between the manifest and the clean-up
    assert prepare(vocab, [corpus], out, "--seq-length", "48", "--resume") == 0
    assert not (out / ".prep").exists()


# -- checkpoints ------------------------------------------------------------------------------------------

STEPS = {"train.max_steps": 4, "train.save_every": 2, "train.eval_every": 100}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """Shards and a 4-step run with checkpoints at steps 2 and 4 (copy it before damaging it)."""
    root = tmp_path_factory.mktemp("faults")
    data = write_shards(root / "shards")
    out = root / "run"
    run_training(data, out, **STEPS)
    return data, out


def copy_run(finished_run, tmp_path: Path) -> tuple[Path, Path]:
    data, out = finished_run
    return data, Path(shutil.copytree(out, tmp_path / "run"))


def losses(out: Path) -> list[tuple[int, float]]:
    return scalars(out)["train/loss"]


def test_nothing_in_a_checkpoint_is_unpickled_as_code(finished_run, tmp_path):
    data, out = copy_run(finished_run, tmp_path)
    marker = tmp_path / "pwned"
    for name in ("custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl"):  # where accelerate pickles state
        (out / "checkpoints" / "step-4" / name).write_bytes(pickle.dumps(Planted(marker)))
    run_training(data, out, **{**STEPS, "train.max_steps": 6, "train.resume": "auto"})
    assert not marker.exists()
    # A planted pickle in place of a file we do load, with its checksum forged too: weights_only refuses.
    step6 = out / "checkpoints" / "step-6"
    rng = step6 / "random_states_0.pkl"
    rng.write_bytes(pickle.dumps({"random_state": Planted(marker)}))
    state = json.loads((step6 / "trainer_state.json").read_text())
    from data_prep.shards import file_digest

    state["files"]["random_states_0.pkl"] = file_digest(rng)
    (step6 / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(UserError, match="random_states_0.pkl cannot be loaded"):
        run_training(data, out, **{**STEPS, "train.max_steps": 8, "train.resume": str(step6)})
    assert not marker.exists()


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("random_states_0.pkl", lambda p: p.write_bytes(b"garbage")),  # accelerate would skip it silently
        ("pytorch_model.bin", flip_a_bit),  # same size, still a valid zip
        ("optimizer.bin", lambda p: p.write_bytes(p.read_bytes()[:100])),
        ("trainer_state.json", lambda p: p.write_text("{garbage")),
    ],
)
def test_a_damaged_checkpoint_file_falls_back_and_resume_stays_exact(
    finished_run, tmp_path, caplog, name, damage
):
    data, out = copy_run(finished_run, tmp_path)
    damage(out / "checkpoints" / "step-4" / name)
    run_training(data, out, **{**STEPS, "train.resume": "auto"})  # falls back to step 2, retrains 3-4
    assert "step-4 is damaged" in caplog.text and name in caplog.text
    assert losses(out) == losses(finished_run[1])
    assert (out / "checkpoints" / ".set-aside-step-4").is_dir()  # kept for a look, out of pruning's way
    final = [load_file(d / "hf" / "final" / "model.safetensors") for d in (out, finished_run[1])]
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])


def test_resume_path_must_be_a_checkpoint_of_this_run(finished_run, tmp_path):
    data, out = copy_run(finished_run, tmp_path)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "trainer_state.json").write_text(json.dumps({"step": 3}))
    with pytest.raises(UserError, match="not written by this trainer"):
        run_training(data, out, **{**STEPS, "train.max_steps": 6, "train.resume": str(foreign)})
    (foreign / "trainer_state.json").write_text("{garbage")
    with pytest.raises(UserError, match="trainer_state.json cannot be read"):
        run_training(data, out, **{**STEPS, "train.max_steps": 6, "train.resume": str(foreign)})
    other = tmp_path / "other"
    run_training(data, other, **{**STEPS, "train.max_steps": 2, "train.seed": 8})
    with pytest.raises(UserError, match="belongs to another run"):
        run_training(
            data,
            out,
            **{**STEPS, "train.max_steps": 6, "train.resume": str(other / "checkpoints" / "step-2")},
        )


def test_resume_completes_a_cut_export_and_cleans_what_saves_and_prunes_left(finished_run, tmp_path):
    data, out = copy_run(finished_run, tmp_path)
    hf = out / "hf"
    expected = (hf / "step-4" / "model.safetensors").read_bytes()
    (hf / "step-4").rename(hf / ".tmp-step-4")  # killed while exporting step 4
    (hf / "step-2").rename(hf / ".del-step-2")  # ... while pruning step 2
    (hf / "final").rename(hf / ".old-final")  # ... between the two renames of replacing final
    (out / "checkpoints" / ".tmp-step-6").mkdir()
    run_training(data, out, **{**STEPS, "train.resume": "auto"})
    assert (hf / "step-4" / "model.safetensors").read_bytes() == expected
    assert (hf / "final").is_dir()
    leftovers = [p.name for d in (hf, out / "checkpoints") for p in d.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_full_disk_during_a_checkpoint_is_one_error_and_a_rerun_recovers(
    finished_run, tmp_path, monkeypatch
):
    from accelerate import Accelerator

    data, out = copy_run(finished_run, tmp_path)
    save_state = Accelerator.save_state

    def full(self, output_dir=None, **kwargs):
        save_state(self, output_dir, **kwargs)
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file"
        )

    monkeypatch.setattr(Accelerator, "save_state", full)
    with pytest.raises(UserError, match="cannot write checkpoint .*step-6.*intact"):
        run_training(data, out, **{**STEPS, "train.max_steps": 6, "train.resume": "auto"})
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2", "step-4"]
    monkeypatch.setattr(Accelerator, "save_state", save_state)
    run_training(data, out, **{**STEPS, "train.max_steps": 6, "train.resume": "auto"})
    assert (out / "checkpoints" / "step-6" / "trainer_state.json").is_file()


def test_a_full_disk_during_an_export_is_one_error_and_resume_writes_it(finished_run, tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    data, out = copy_run(finished_run, tmp_path)
    save_pretrained = PreTrainedModel.save_pretrained

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full)
    with pytest.raises(UserError, match="cannot write the export .*step-6.*No space left"):
        run_training(data, out, **{**STEPS, "train.max_steps": 6, "train.resume": "auto"})
    assert (out / "checkpoints" / "step-6").is_dir() and not (out / "hf" / "step-6").exists()
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_pretrained)
    run_training(data, out, **{**STEPS, "train.max_steps": 6, "train.resume": "auto"})
    assert (out / "hf" / "step-6" / "model.safetensors").is_file()
    assert not [p for p in (out / "hf").iterdir() if p.name.startswith(".")]


# -- hostile corpora --------------------------------------------------------------------------------------

FUZZ_EXAMPLES = int(os.environ.get("BART_FUZZ_EXAMPLES", "100"))
_LINE = st.one_of(
    st.text(st.characters(codec=None, categories=None), max_size=60).map(
        lambda s: s.encode("utf-8", "surrogatepass")  # lone surrogates: invalid UTF-8 on disk
    ),
    st.binary(max_size=60),  # random bytes, NULs and all
    st.text(alphabet="中国的首都是北京人民，。", max_size=30).map(
        lambda s: s.encode("gbk")
    ),  # GBK, not UTF-8
    st.integers(1, 3000).map(lambda d: ("[" * d + "]" * d).encode()),  # deeply nested "JSON"
    st.sampled_from([b"", b" ", b"\t", "\u3000".encode(), b"\r", b"\x1c"]),  # blank lines
)


def documents_in(raw: bytes, fmt: str) -> int:
    """The documents a corpus holds, by the format's definition: a document per non-blank line
    (``lines``), or per run of non-blank lines (``clue``); blank means whitespace only."""
    filled = [bool(line.strip()) for line in raw.decode("utf-8", "replace").split("\n")]
    if fmt == "lines":
        return sum(filled)
    return sum(1 for i, f in enumerate(filled) if f and (i == 0 or not filled[i - 1]))


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    lines=st.lists(_LINE, max_size=40), fmt=st.sampled_from(["lines", "clue"]), final_newline=st.booleans()
)
def test_a_hostile_corpus_never_crashes_and_loses_no_document_uncounted(
    tmp_path_factory, vocab, capsys, lines, fmt, final_newline
):
    root = tmp_path_factory.mktemp("fuzz")
    raw = b"\n".join(line.replace(b"\n", b" ") for line in lines) + (b"\n" if final_newline else b"")
    (root / "in.txt").write_bytes(raw)
    status = prepare(vocab, [root / "in.txt"], root / "out", "--format", fmt, "--seq-length", "32")
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if status == 2:  # nothing to train on: said in one line
        assert err.count("\n") == 1, err
        assert documents_in(raw, fmt) == 0 or "binary" in err, err
        return
    assert status == 0, err
    m = json.loads((root / "out" / "manifest.json").read_text())
    if m["repairs"]["binary_files_skipped"]:
        return  # the whole file was skipped, and counted
    found = sum(m["counts"][s]["documents"] for s in ("train", "valid")) + m["repairs"]["empty_documents"]
    assert found == documents_in(raw, fmt)


def test_a_million_empty_lines_and_one_document(tmp_path, vocab):
    (tmp_path / "in.txt").write_bytes(b"\n" * 1_000_000 + "中国的首都是北京。\n".encode() + b"\r\n" * 500_000)
    assert prepare(vocab, [tmp_path / "in.txt"], tmp_path / "out", "--seq-length", "32") == 0
    counts = json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"]
    assert counts["train"]["documents"] + counts["valid"]["documents"] == 1


def test_auto_map_in_an_init_from_config_is_never_run(finished_run, tmp_path):
    data, out = finished_run
    export = Path(shutil.copytree(out / "hf" / "final", tmp_path / "export"))
    marker = tmp_path / "pwned"
    (export / "evil.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    config = json.loads((export / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.Config", "AutoModelForSeq2SeqLM": "evil.Model"}
    (export / "config.json").write_text(json.dumps(config))
    run_training(data, tmp_path / "run", **{**STEPS, "train.max_steps": 1, "model.init_from": str(export)})
    assert not marker.exists()


def test_output_dirs_that_are_files_or_inside_one_are_one_line_errors(finished_run, tmp_path):
    data, _ = finished_run
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="exists and is not a directory"):
        run_training(data, blocker, **STEPS)
    with pytest.raises(UserError, match="lies inside a file"):
        run_training(data, blocker / "run", **STEPS)
    assert data_main(["prepare", "--input", str(blocker), "--tokenizer", "x", "--output", str(blocker)]) == 2


def test_symlinks_planted_in_an_output_dir_are_replaced_never_written_through(finished_run, tmp_path):
    data, out = copy_run(finished_run, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    shutil.rmtree(out / "hf" / "step-2")
    (out / "hf" / "step-2").symlink_to(outside, target_is_directory=True)  # pruned at the next save
    (out / "config.yaml").unlink()
    (out / "config.yaml").symlink_to(outside / "keep.txt")  # rewritten at every launch
    run_training(data, out, **{**STEPS, "train.max_steps": 8, "train.resume": "auto"})
    assert (outside / "keep.txt").read_text() == "mine"
    assert not (out / "config.yaml").is_symlink() and not (out / "hf" / "step-2").exists()
    assert not [p for p in (out / "hf").iterdir() if p.name.startswith(".")]


def test_a_garbled_manifest_is_named_in_one_line(fresh_shards, capsys):
    (fresh_shards / "manifest.json").write_text('{"seq_length": 48, "counts": ')
    assert data_main(["inspect", str(fresh_shards)]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "manifest.json" in err and err.count("\n") == 1
    with pytest.raises(UserError, match="cannot read .*manifest.json"):
        load_shards(str(fresh_shards))


def test_resuming_onto_other_data_with_the_same_vocab_is_refused(finished_run, tmp_path):
    data, out = copy_run(finished_run, tmp_path)
    other = write_shards(tmp_path / "other", n_docs=120)  # the same vocab, other documents
    assert ShardDir(other).vocab_sha256() == ShardDir(data).vocab_sha256()
    with pytest.raises(UserError, match=r"holds a different run \(differs in data\)"):
        run_training(other, out, **{**STEPS, "train.max_steps": 6, "train.resume": "auto"})


def test_symlink_loops_in_the_input_are_skipped_and_counted(tmp_path, vocab, capsys):
    corpus = tmp_path / "in"
    (corpus / "d").mkdir(parents=True)
    (corpus / "d" / "a.txt").write_text("中国的首都是北京。\n", encoding="utf-8")
    (corpus / "d" / "up").symlink_to(corpus, target_is_directory=True)  # a directory loop
    (corpus / "x1").symlink_to(corpus / "x2")  # a loop of two links
    (corpus / "x2").symlink_to(corpus / "x1")
    assert prepare(vocab, [corpus], tmp_path / "out", "--seq-length", "32") == 0
    assert "2 dangling links" in capsys.readouterr().err
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["input"]["files"] == 1 and sum(m["counts"][s]["documents"] for s in ("train", "valid")) == 1

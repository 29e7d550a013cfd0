"""``data_prep.shards`` (and ``pretrain.data.load_shards`` over it): damaged shard directories are detected
and named in one line -- a truncated or changed Arrow file, an id outside the vocab (with its file and row),
a swapped tokenizer file, other special ids, a garbled manifest -- by ``inspect`` and by the trainer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from helpers import clue_corpus, prepare

from data_prep.__main__ import main as data_main
from data_prep.errors import UserError
from data_prep.shards import ShardDir
from pretrain.data import load_shards

pytestmark = pytest.mark.faults  # counted by bench/faults.py


@pytest.fixture
def fresh_shards(shards, tmp_path) -> Path:
    """A private copy of the session's shards, free to damage."""
    return Path(shutil.copytree(shards, tmp_path / "shards"))


def first_arrow(root: Path) -> Path:
    return sorted((root / "train").glob("*.arrow"))[0]


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


def test_a_garbled_manifest_is_named_in_one_line(fresh_shards, capsys):
    (fresh_shards / "manifest.json").write_text('{"seq_length": 48, "counts": ')
    assert data_main(["inspect", str(fresh_shards)]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "manifest.json" in err and err.count("\n") == 1
    with pytest.raises(UserError, match="cannot read .*manifest.json"):
        load_shards(str(fresh_shards))

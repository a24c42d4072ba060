"""Bad input through the CLI: one `error:` line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import re

import pytest
import torch

from .conftest import toy_rows, write_csv

GOOD = toy_rows(40)


def files(tmp_path):
    """Every kind of bad data file, keyed by case name."""
    def write(name, data):
        (tmp_path / name).write_bytes(data)
        return tmp_path / name

    return {
        "missing": tmp_path / "nope.csv",
        "empty": write("empty.csv", b""),
        "header_only": write("header.csv", b"text,label\n"),
        "columns": write_csv(tmp_path / "cols.csv", [{"review": "x", "stars": 1}, {"review": "y", "stars": 2}]),
        "one_class": write_csv(tmp_path / "one.csv", [{"text": f"t{i}", "label": "a"} for i in range(10)]),
        "empty_text": write_csv(tmp_path / "et.csv", GOOD[:5] + [{"text": "  ", "label": "pos"}]),
        "no_labels": write_csv(tmp_path / "nl.csv", [{"text": "a", "label": ""}, {"text": "b", "label": ""}]),
        "latin1": write("latin.csv", "text,label\ncaf\xe9,pos\nok,neg\n".encode("latin-1")),
        "bad_csv": write("bad.csv", b"text,label\na,pos\nb,neg,extra\n"),
        "bad_jsonl": write("bad.jsonl", b'{"text": "a", "label": "pos"}\n{"text": "b", "label": neg}\n'),
        "binary": write("model.csv", b"PK\x03\x04\x00\x00binary\x00\xff\xfe" * 20),
    }


CASES = {
    "missing": "data file not found",
    "empty": "is empty",
    "header_only": "header but no rows",
    "columns": "column 'text', 'label' not found in .*; columns present: review, stars",
    "one_class": "only one class",
    "empty_text": "have an empty 'text' \\(first at line 7\\)",
    "no_labels": "no row of .* has a label",
    "latin1": "not valid utf-8: byte 0xe9 at line 2",
    "bad_csv": "line 3: 3 fields",
    "bad_jsonl": "malformed JSON in .* at line 2",
    "binary": "is binary, not text \\(it holds NUL bytes\\)",
}


def assert_clean_failure(result, pattern, tmp_path):
    import re

    code, out, err = result
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists() and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data(cli, tmp_path, tiny_backbone, case):
    path = files(tmp_path)[case]
    assert_clean_failure(cli("train", "-s", "full", "-b", tiny_backbone, "-d", path, "-q"), CASES[case], tmp_path)


def test_eval_labels_unseen(cli, tmp_path, tiny_backbone):
    train = write_csv(tmp_path / "t.csv", GOOD)
    evalf = write_csv(tmp_path / "e.csv", toy_rows(4, labels=("pos", "meh")))
    result = cli("train", "-b", tiny_backbone, "-d", train, "--eval-data", evalf)
    assert_clean_failure(result, "labels in .* never seen in training: 'meh'", tmp_path)


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["-s", "fulll"], "unknown strategy 'fulll' \\(did you mean 'full'\\?\\)"),
        (["--set", "train.lrr=1"], "unknown config key 'train.lrr' \\(did you mean 'train.lr'\\?\\)"),
        (["--set", "train.epochs=-1"], "invalid config 'train.epochs'"),
        (["--set", "strategy.k=99", "-s", "top_k"], "strategy.k=99 but the backbone has only 2 layers"),
        (["--bogus-flag"], "No such option: --bogus-flag"),
        (["--seed", "-5"], "invalid config 'train.seed': Input should be greater than or equal to 0"),
        (["--distributed", "zero"], "invalid config 'train.distributed'"),
        pytest.param(["-s", "qlora"], "qlora needs a CUDA GPU \\(bitsandbytes' 4-bit kernels\\): this machine has none; use lora",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: qlora runs")),
    ],
)
def test_bad_options(cli, tmp_path, tiny_backbone, toy_csv, args, pattern):
    assert_clean_failure(cli("train", "-b", tiny_backbone, "-d", toy_csv, "-q", *args), pattern, tmp_path)


def test_invalid_yaml_recipe(cli, tmp_path):
    (tmp_path / "r.yaml").write_text("strategy: lora\ntrain: [unclosed\n", encoding="utf-8")
    assert_clean_failure(cli("train", tmp_path / "r.yaml"), "invalid YAML in .*r.yaml at line", tmp_path)


@pytest.mark.parametrize(
    ("backbone", "pattern"),
    [
        ("minilm-l66", "unknown backbone 'minilm-l66' \\(did you mean 'minilm-l6'\\?\\)"),
        ("./no/such/folder", "backbone folder not found"),
        ("someorg/no-such-model", "not available offline"),
    ],
)
def test_bad_backbone(cli, tmp_path, toy_csv, monkeypatch, backbone, pattern):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert_clean_failure(cli("train", "-b", backbone, "-d", toy_csv), pattern, tmp_path)


def test_folder_without_config(cli, tmp_path, toy_csv):
    (tmp_path / "model").mkdir()
    assert_clean_failure(cli("train", "-b", tmp_path / "model", "-d", toy_csv), "has no config.json", tmp_path)


def test_compare_unknown_strategy(cli, tmp_path, tiny_backbone, toy_csv):
    result = cli("compare", "-b", tiny_backbone, "-d", toy_csv, "--strategies", "full,loraa")
    assert_clean_failure(result, "unknown strategy 'loraa'", tmp_path)


def test_predict_on_a_non_run_folder(cli, tmp_path):
    (tmp_path / "x").mkdir()
    assert_clean_failure(cli("predict", tmp_path / "x", "--input", tmp_path / "in.csv"), "not a finished adaptlab run", tmp_path)


def test_diverging_training_stops_with_one_error_line(cli, tmp_path, tiny_backbone, toy_csv):
    code, out, err = cli("train", "-s", "full", "-b", tiny_backbone, "-d", toy_csv, "--lr", "1e6", "--epochs", "3", "-q")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err, err
    assert re.match(r"error: training loss became (nan|inf) at step \d+ \(epoch 1\) with learning rate", lines[-1]), err
    assert not [line for line in lines if line.startswith("error: ")][:-1]  # one error line (progress lines before it)
    assert not (tmp_path / "runs").exists() and not list(tmp_path.glob("runs/*.partial"))


def test_backbone_folder_problems_are_named(cli, tmp_path, tiny_backbone, toy_csv):
    import shutil

    no_tokenizer = tmp_path / "no-tok"
    shutil.copytree(tiny_backbone, no_tokenizer)
    for f in no_tokenizer.iterdir():
        if "token" in f.name or f.name in ("vocab.txt", "special_tokens_map.json"):
            f.unlink()
    assert_clean_failure(cli("train", "-b", no_tokenizer, "-d", toy_csv, "-q"), "has no tokenizer files", tmp_path)

    truncated = tmp_path / "truncated"
    shutil.copytree(tiny_backbone, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert_clean_failure(cli("train", "-b", truncated, "-d", toy_csv, "-q"), "cannot read the weights .*model.safetensors", tmp_path)


def test_max_length_beyond_the_position_table(cli, tmp_path, tiny_backbone, toy_csv):
    result = cli("train", "-b", tiny_backbone, "-d", toy_csv, "--set", "data.max_length=100", "-q")
    assert_clean_failure(result, "data.max_length=100 is longer than backbone .* can read \\(64 positions\\)", tmp_path)
    code, _, err = cli("train", "-s", "linear_probe", "-b", tiny_backbone, "-d", toy_csv, "-o", "run", "-q")  # default 128: cut to 64
    assert code == 0, err
    assert "max_length: 64" in (tmp_path / "run" / "config.yaml").read_text()


def test_stratified_ties_are_drawn_not_lowest_ids():
    """With 1,000 classes of 3 examples, 300 places: which classes get one depends on the seed."""
    from adaptlab.data.task import stratified_split

    labels = [c for c in range(1000) for _ in range(3)]
    picks = [{labels[i] for i in stratified_split(labels, 300, seed)[0]} for seed in (0, 1)]
    assert all(len(p) == 300 for p in picks) and picks[0] != picks[1] and picks[0] != set(range(300))


def test_unreadable_data_file(cli, tmp_path, tiny_backbone, toy_csv, monkeypatch):
    """A file the user may not read (a root-owned export; as root a test can only simulate the refusal)."""
    from pathlib import Path

    original = Path.read_bytes

    def refuse(self):
        if self.name == "secret.csv":
            raise PermissionError(13, "Permission denied")
        return original(self)

    secret = write_csv(tmp_path / "secret.csv", GOOD)
    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert_clean_failure(cli("train", "-b", tiny_backbone, "-d", secret, "-q"), "cannot read data file .*secret.csv: permission denied", tmp_path)


def test_output_where_no_folder_can_be_made(cli, tmp_path, tiny_backbone, toy_csv, monkeypatch):
    """Checked before any data or model is loaded."""
    import adaptlab.training.runner as runner

    monkeypatch.setattr(runner, "make_setup", lambda *a, **k: pytest.fail("loaded data before checking the output folder"))
    (tmp_path / "file.txt").write_text("not a folder")
    code, _, err = cli("train", "-b", tiny_backbone, "-d", toy_csv, "-o", str(tmp_path / "file.txt" / "run"), "-q")
    assert code == 2 and "error: cannot write next to" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["code", "damaged"])
def test_pickled_weights_that_are_not_plain_tensors_are_refused(cli, tmp_path, tiny_backbone, toy_csv, kind):
    import pickle
    import shutil

    folder = tmp_path / "bb"
    shutil.copytree(tiny_backbone, folder)
    (folder / "model.safetensors").unlink()

    class Payload:
        def __reduce__(self):
            return (print, ("this ran while unpickling",))

    data = pickle.dumps({"weight": Payload()}) if kind == "code" else b"PK\x03\x04 truncated"
    (folder / "pytorch_model.bin").write_bytes(data)
    code, out, err = cli("train", "-b", str(folder), "-d", toy_csv, "-o", str(tmp_path / "run"), "-q")
    assert code == 2 and "refusing the weights" in err and "Traceback" not in err, err
    assert "weights_only=False" not in err and "this ran while unpickling" not in out + err
    assert ("holds more than tensors" if kind == "code" else "damaged") in err


def test_semicolons_long_cells_and_unknown_tokens(tmp_path, tiny_backbone, caplog):
    from adaptlab.config import DataConfig
    from adaptlab.data.batching import encode
    from adaptlab.data.files import read_table
    from adaptlab.data.task import build_task
    from adaptlab.models.backbones import load_backbone

    long_text = "good film " * 70_000  # 700k characters: beyond csv's default field limit of 131,072
    (tmp_path / "semi.csv").write_text("text;label\n" + "\n".join(f"{r['text']};{r['label']}" for r in GOOD) + f"\n{long_text};pos\n")
    table = read_table(tmp_path / "semi.csv")
    assert table.columns == ["text", "label"] and len(table.rows) == len(GOOD) + 1
    data = build_task(DataConfig(train=str(tmp_path / "semi.csv")), 0, table)
    backbone = load_backbone(str(tiny_backbone))
    with caplog.at_level("WARNING", logger="adaptlab"):
        encode(data.train, backbone.tokenizer, 32)
    assert any("were cut to it" in r.message for r in caplog.records)
    caplog.clear()
    emoji = type(data.train)(["\U0001f600 \U0001f44d"] * 8 + ["good film"] * 2, [0] * 10)
    with caplog.at_level("WARNING", logger="adaptlab"):
        encode(emoji, backbone.tokenizer, 32)
    assert any("unknown to the tokenizer" in r.message and "8 texts are nothing but unknown tokens" in r.message for r in caplog.records)


def test_predict_reads_other_encodings(cli, tmp_path, tiny_backbone, toy_csv):
    code, _, err = cli("train", "-s", "full", "-b", tiny_backbone, "-d", toy_csv, "--epochs", "1", "-o", str(tmp_path / "run"), "-q")
    assert code == 0, err
    (tmp_path / "in.csv").write_bytes("text\ncaf\xe9 good\n".encode("latin-1"))
    code, _, err = cli("predict", str(tmp_path / "run"), "--input", str(tmp_path / "in.csv"))
    assert code == 2 and "pass --encoding latin-1" in err
    code, out, err = cli("predict", str(tmp_path / "run"), "--input", str(tmp_path / "in.csv"), "--encoding", "latin-1")
    assert code == 0, err
    assert "café good" in out or "caf\\u00e9 good" in out, out  # the text as read (JSON may escape the é)


def test_ctrl_c_names_the_folder_to_resume(cli, tmp_path, tiny_backbone, toy_csv, monkeypatch):
    from adaptlab.training.loop import StepLog

    original = StepLog.step

    def interrupted(self, state, epoch, lr):
        original(self, state, epoch, lr)
        if state.step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(StepLog, "step", interrupted)
    out = tmp_path / "run"
    code, _, err = cli("train", "-s", "full", "-b", tiny_backbone, "-d", toy_csv, "--epochs", "2", "-o", str(out), "-q",
                       "--set", "train.checkpoint_every=2")
    assert code == 130
    assert f"{out}.partial holds the last checkpoint; continue with --output {out} --resume" in err

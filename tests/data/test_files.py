"""Reading data files: every format, and every way a file can be bad."""

from __future__ import annotations

import json

import pytest

from adaptlab.data.files import read_table
from adaptlab.errors import AdaptlabError


def test_csv_tsv_jsonl_json(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n"a, quoted\nmultiline",x\nplain,y\n', encoding="utf-8")
    (tmp_path / "a.tsv").write_text("text\tlabel\none\tx\ntwo\ty\n", encoding="utf-8")
    (tmp_path / "a.jsonl").write_text('{"text": "one", "label": 1}\n\n{"text": "two", "label": 0}\n', encoding="utf-8")
    (tmp_path / "a.json").write_text(json.dumps({"data": [{"text": "one", "label": "x"}]}), encoding="utf-8")
    (tmp_path / "cols.json").write_text(json.dumps({"text": ["a", "b"], "label": [0, 1]}), encoding="utf-8")
    csv = read_table(tmp_path / "a.csv")
    assert csv.rows[0]["text"] == "a, quoted\nmultiline" and csv.lines == [2, 4]
    assert read_table(tmp_path / "a.tsv").rows[1] == {"text": "two", "label": "y"}
    jsonl = read_table(tmp_path / "a.jsonl")
    assert jsonl.lines == [1, 3] and jsonl.rows[1]["label"] == 0
    assert read_table(tmp_path / "a.json").rows == [{"text": "one", "label": "x"}]
    assert read_table(tmp_path / "cols.json").rows[1] == {"text": "b", "label": 1}


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a", "b"], "label": ["x", "y"]}), tmp_path / "a.parquet")
    assert read_table(tmp_path / "a.parquet").rows == [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]


def test_utf8_bom_is_ignored(tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufefftext,label\nhi,x\n".encode())
    assert read_table(tmp_path / "bom.csv").columns == ["text", "label"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "data file not found"),
        ("empty.csv", b"", "is empty"),
        ("blank.csv", b"\n\n  \n", "is empty"),
        ("header.csv", b"text,label\n", "header but no rows"),
        ("latin.csv", "text,label\nok,x\ncaf\xe9,y\n".encode("latin-1"), "not valid utf-8: byte 0xe9 at line 3"),
        ("fields.csv", b"text,label\na,x\nb,y,z\n", "line 3: 3 fields, the header has 2"),
        ("quote.csv", b'text,label\n"a"b,x\n', "malformed CSV"),
        ("bad.jsonl", b'{"text": "a", "label": 1}\n{"text": "b", label: 2}\n', "at line 2"),
        ("list.jsonl", b'{"text": "a"}\n[1, 2]\n', "line 2 of"),
        ("bad.json", b'{"text": [1, 2', "malformed JSON"),
        ("scalar.json", b"42", "must hold a list of objects"),
        ("notes.txt", b"hello", "unsupported data file type"),
    ],
)
def test_bad_files(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AdaptlabError, match=message.replace("(", r"\(")) as err:
        read_table(path)
    assert "\n" not in str(err.value)


def test_folder_is_rejected(tmp_path):
    with pytest.raises(AdaptlabError, match="is a folder"):
        read_table(tmp_path)

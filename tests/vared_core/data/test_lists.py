"""List-file parsing: formats, labels, and errors that name the file and the 1-based line."""
from __future__ import annotations

from pathlib import Path

import pytest

from vared_core.data import ListFileError, find_missing, read_class_folders, read_list, read_video_list


def test_plain_list_resolves_paths_and_skips_comments(tmp_path: Path) -> None:
    lst = tmp_path / "train.txt"
    lst.write_text("# comment\n\nvideos/a.mp4 0\nmy clips/b c.mp4   2\n/abs/d.mp4 1\n")
    parsed = read_list(lst)
    got = [(str(r.path), r.label, r.line) for r in parsed.records]
    assert got == [
        (str(tmp_path / "videos/a.mp4"), 0, 3),
        (str(tmp_path / "my clips/b c.mp4"), 2, 4),
        ("/abs/d.mp4", 1, 5),
    ]
    assert parsed.classes == ("0", "1", "2")
    assert all(r.source == lst for r in parsed.records)
    other_root = read_list(lst, root="/data")
    assert other_root.records[0].path == Path("/data/videos/a.mp4")


def test_csv_list_with_time_range_levels_and_extra_columns(tmp_path: Path) -> None:
    lst = tmp_path / "val.csv"
    lst.write_text(
        "path,label,start_sec,end_sec,motion,clutter,source\n"
        "a.mp4,1,0.5,2.0,3,0,yt\n"
        "\"b,with comma.mp4\",0,,,,,\n"
    )
    a, b = read_list(lst, classes=["x", "y"]).records
    assert (a.label, a.start_sec, a.end_sec, a.motion, a.clutter, a.extra) == (1, 0.5, 2.0, 3, 0, {"source": "yt"})
    assert (b.path.name, b.label, b.start_sec, b.motion, b.line) == ("b,with comma.mp4", 0, None, None, 3)


def test_class_name_labels_use_classes_txt_beside_the_list(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("run\njump\n")
    lst = tmp_path / "l.txt"
    lst.write_text("a.mp4 jump\nb.mp4 run\n")
    parsed = read_list(lst)
    assert parsed.classes == ("run", "jump")
    assert [r.label for r in parsed.records] == [1, 0]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("a.mp4 0\nlonely_field\nc.mp4 1\n", 2, "malformed"),
        ("a.mp4 0\nb.mp4 1\n\nc.mp4 -3\n", 4, "unknown label -3"),
        ("path,label,motion\na.mp4,0,1\nb.mp4,1\n", 3, "malformed"),
        ("path,label,motion\na.mp4,0,1\nb.mp4,1,fast\n", 3, "motion must be an integer"),
        ("path,label,start_sec,end_sec\na.mp4,0,3,1\n", 2, "end_sec"),
    ],
)
def test_bad_line_is_reported_with_file_and_line_number(tmp_path: Path, text: str, line: int, words: str) -> None:
    lst = tmp_path / "bad.txt"
    lst.write_text(text)
    with pytest.raises(ListFileError) as info:
        read_list(lst)
    assert info.value.line == line
    assert info.value.source == lst
    assert str(info.value).startswith(f"{lst}:{line}: ")
    assert words in str(info.value)


def test_unknown_label_is_reported_with_line_number(tmp_path: Path) -> None:
    lst = tmp_path / "l.txt"
    lst.write_text("a.mp4 run\nb.mp4 swim\n")
    with pytest.raises(ListFileError, match=r"l\.txt:2: unknown label 'swim'"):
        read_list(lst, classes=["run", "jump"])
    lst.write_text("a.mp4 0\nb.mp4 1\nc.mp4 2\n")
    with pytest.raises(ListFileError, match=r"l\.txt:3: unknown label 2: integer labels must lie in \[0, 2\)"):
        read_list(lst, classes=["run", "jump"])


def test_unreadable_or_empty_list(tmp_path: Path) -> None:
    with pytest.raises(ListFileError, match="cannot read the list file"):
        read_list(tmp_path / "nope.txt")
    empty_csv = tmp_path / "e.csv"
    empty_csv.write_text("")
    assert read_list(empty_csv).records == ()


def test_class_folders_and_missing_files(tmp_path: Path) -> None:
    for cls, names in {"walk": ["b.mp4", "a.MP4", "notes.txt"], "jump": ["sub/c.avi"]}.items():
        for name in names:
            (tmp_path / cls / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / cls / name).write_bytes(b"x")
    parsed = read_video_list(tmp_path)
    assert parsed.classes == ("jump", "walk")
    assert [(r.path.relative_to(tmp_path).as_posix(), r.label) for r in parsed.records] == [
        ("jump/sub/c.avi", 0), ("walk/a.MP4", 1), ("walk/b.mp4", 1),
    ]
    with pytest.raises(ListFileError, match="class 'swim' has no folder"):
        read_class_folders(tmp_path, classes=["walk", "swim"])
    (tmp_path / "walk" / "b.mp4").unlink()
    assert [r.path.name for r in find_missing(parsed.records)] == ["b.mp4"]

"""List files and class-folder trees → `VideoRecord` entries (one per video)."""
from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "VIDEO_EXTENSIONS",
    "ListFileError",
    "VideoList",
    "VideoRecord",
    "find_missing",
    "read_class_folders",
    "read_list",
    "read_video_list",
]

log = logging.getLogger(__name__)

#: File endings `read_class_folders` treats as videos (compared lower-case).
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")

_INT_COLUMNS = ("motion", "clutter")
_FLOAT_COLUMNS = ("start_sec", "end_sec")


class ListFileError(ValueError):
    """A video list (or class-folder tree) that cannot be used as written.

    Attributes:
        source: the list file (or folder) at fault.
        line: 1-based line number in ``source``, or ``None`` when the error is not about one line.
    """

    def __init__(self, source: str | os.PathLike[str], line: int | None, message: str) -> None:
        self.source = Path(source)
        self.line = line
        where = f"{self.source}:{line}" if line is not None else str(self.source)
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class VideoRecord:
    """One video of a dataset, as listed.

    Args:
        path: the video file (absolute, or relative to the working directory).
        label: class index in ``[0, num_classes)``.
        start_sec / end_sec: optional time range to sample clips from, in seconds (``None`` = whole video).
        motion / clutter: optional integer levels (written by `vared_core.data.synthetic`).
        source: the list file the record came from (``None`` for folder trees or hand-built records).
        line: 1-based line number in ``source`` (``None`` when not from a list file).
        extra: any further CSV columns, as strings.

    Example:
        >>> VideoRecord(Path("a.mp4"), 3).label
        3
    """

    path: Path
    label: int
    start_sec: float | None = None
    end_sec: float | None = None
    motion: int | None = None
    clutter: int | None = None
    source: Path | None = None
    line: int | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def where(self) -> str:
        """``list_file:line`` when the record came from a list file, else the video path."""
        if self.source is not None and self.line is not None:
            return f"{self.source}:{self.line}"
        return str(self.path)


@dataclass(frozen=True)
class VideoList:
    """Parsed records plus the class names they index (``classes[record.label]``).

    ``classes`` holds the names when they are known (given, read from a ``classes.txt`` beside the
    list, found as folder names or as label names in the list); otherwise the strings ``"0" … "N-1"``.
    """

    records: tuple[VideoRecord, ...]
    classes: tuple[str, ...]


def _parse_label(
    text: str, classes: Sequence[str] | None, source: Path, line: int
) -> tuple[int | None, str | None]:
    """Integer label → (index, None); a name → (index or None when classes are unknown yet, name)."""
    text = text.strip()
    if not text:
        raise ListFileError(source, line, "empty label: every line needs `path label`")
    try:
        value = int(text)
    except ValueError:
        if classes is None:
            return None, text
        if text not in classes:
            raise ListFileError(
                source, line,
                f"unknown label {text!r}: not one of the {len(classes)} classes "
                f"({', '.join(list(classes)[:8])}{', …' if len(classes) > 8 else ''}); "
                "fix the line or pass the full class list (classes=...)",
            ) from None
        return list(classes).index(text), text
    if value < 0 or (classes is not None and value >= len(classes)):
        bound = f"[0, {len(classes)})" if classes is not None else "≥ 0"
        raise ListFileError(
            source, line,
            f"unknown label {value}: integer labels must lie in {bound}; fix the line or pass the "
            "full class list (classes=...)",
        )
    return value, None


def _looks_like_csv_header(first: str) -> bool:
    fields = [f.strip().lower() for f in first.split(",")]
    return "path" in fields and "label" in fields


def _resolve(path_text: str, base: Path) -> Path:
    path = Path(path_text.strip())
    return path if path.is_absolute() else base / path


def read_list(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    classes: Sequence[str] | None = None,
) -> VideoList:
    """Parse a video list file into records.

    Two formats, told apart by the first non-blank line:

    * **plain**: ``path label`` per line, separated by whitespace (the path may contain spaces: the
      label is the last field). Blank lines and lines starting with ``#`` are skipped.
    * **CSV with header**: a first line naming at least ``path`` and ``label``; optional columns
      ``start_sec``, ``end_sec`` (float seconds, empty = unbounded), ``motion``, ``clutter`` (ints);
      any other column is kept as a string in ``VideoRecord.extra``.

    A label is either an integer class index or a class name. Names are looked up in ``classes``; when
    ``classes`` is not given it is read from a ``classes.txt`` beside the list (one name a line) if
    there is one, else the sorted set of names in the list becomes the class list. Files are not
    checked for existence here (see `find_missing`).

    Args:
        path: the list file.
        root: folder that relative video paths are relative to (default: the list file's folder).
        classes: class names; label ``i`` means ``classes[i]``.

    Returns:
        A `VideoList`; every record carries ``source`` and its 1-based ``line``.

    Raises:
        ListFileError: for an unreadable file, a malformed line, a bad number or an unknown label; the
            message names the file and the 1-based line number.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "train.txt").write_text("a.mp4 0\\nb.mp4 1\\n")
        >>> [(r.path.name, r.label, r.line) for r in read_list(d / "train.txt").records]
        [('a.mp4', 0, 1), ('b.mp4', 1, 2)]
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ListFileError(source, None, f"cannot read the list file ({err}); check the path") from err
    base = Path(root) if root is not None else source.parent
    if classes is None:
        classes_file = source.parent / "classes.txt"
        if classes_file.is_file():
            classes = [c.strip() for c in classes_file.read_text(encoding="utf-8").splitlines() if c.strip()]
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")
    if _looks_like_csv_header(first):
        rows = _parse_csv(text, source, base, classes)
    else:
        rows = _parse_plain(lines, source, base, classes)
    return _finish(rows, classes, source)


_Row = tuple[dict[str, object], str | None]


def _parse_plain(lines: list[str], source: Path, base: Path, classes: Sequence[str] | None) -> list[_Row]:
    rows: list[_Row] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise ListFileError(
                source, number, f"malformed line {raw!r}: expected `path label` separated by whitespace"
            )
        label, name = _parse_label(parts[1], classes, source, number)
        fields: dict[str, object] = {"path": _resolve(parts[0], base), "label": label, "line": number}
        rows.append((fields, name))
    return rows


def _parse_csv(text: str, source: Path, base: Path, classes: Sequence[str] | None) -> list[_Row]:
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    rows: list[_Row] = []
    for cells in reader:
        number = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        if header is None:
            header = [c.strip().lower() for c in cells]
            dup = {h for h in header if header.count(h) > 1}
            if dup:
                raise ListFileError(source, number, f"duplicate CSV column(s) {sorted(dup)} in the header")
            continue
        if len(cells) != len(header):
            raise ListFileError(
                source, number,
                f"malformed line: {len(cells)} fields but the header has {len(header)} "
                f"({','.join(header)}); quote paths that contain commas",
            )
        row = dict(zip(header, (c.strip() for c in cells), strict=True))
        if not row["path"]:
            raise ListFileError(source, number, "empty path")
        label, name = _parse_label(row["label"], classes, source, number)
        fields: dict[str, object] = {"path": _resolve(row["path"], base), "label": label, "line": number}
        for col in _FLOAT_COLUMNS:
            if row.get(col):
                try:
                    fields[col] = float(row[col])
                except ValueError:
                    raise ListFileError(
                        source, number, f"{col} must be a number of seconds, got {row[col]!r}"
                    ) from None
        for col in _INT_COLUMNS:
            if row.get(col):
                try:
                    fields[col] = int(row[col])
                except ValueError:
                    raise ListFileError(source, number, f"{col} must be an integer, got {row[col]!r}") from None
        start, end = fields.get("start_sec"), fields.get("end_sec")
        if start is not None and end is not None and float(end) <= float(start):  # type: ignore[arg-type]
            raise ListFileError(source, number, f"end_sec {end} must be after start_sec {start}")
        known = {"path", "label", *_FLOAT_COLUMNS, *_INT_COLUMNS}
        fields["extra"] = {k: v for k, v in row.items() if k not in known}
        rows.append((fields, name))
    if header is None:
        raise ListFileError(source, None, "empty list file: no header and no videos")
    return rows


def _finish(rows: list[_Row], classes: Sequence[str] | None, source: Path) -> VideoList:
    names = [name for _, name in rows if name is not None]
    if classes is None and names:
        numeric = [f["line"] for f, name in rows if name is None]
        if numeric:
            raise ListFileError(
                source, int(numeric[0]),  # type: ignore[call-overload]
                "integer label mixed with class-name labels; use one kind, or pass classes=...",
            )
        classes = sorted(set(names))
        for fields, name in rows:
            fields["label"] = classes.index(name)  # type: ignore[arg-type]
    if classes is None:
        num = 1 + max((int(f["label"]) for f, _ in rows), default=-1)  # type: ignore[call-overload]
        classes = [str(i) for i in range(num)]
    records = tuple(VideoRecord(source=source, **fields) for fields, _ in rows)  # type: ignore[arg-type]
    return VideoList(records=records, classes=tuple(classes))


def read_class_folders(
    root: str | os.PathLike[str],
    *,
    classes: Sequence[str] | None = None,
    extensions: Iterable[str] = VIDEO_EXTENSIONS,
) -> VideoList:
    """Collect ``root/<class name>/**/<video>`` files; the class is the first folder level.

    Args:
        root: the tree's root folder.
        classes: class names in label order (default: the sorted sub-folder names of ``root``).
        extensions: file endings counted as videos (case-insensitive).

    Returns:
        A `VideoList`, records sorted by class, then path.

    Raises:
        ListFileError: when ``root`` is not a folder or a given class has no folder.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); (d / "run").mkdir(); _ = (d / "run" / "x.mp4").write_bytes(b"")
        >>> read_class_folders(d).classes
        ('run',)
    """
    base = Path(root)
    if not base.is_dir():
        raise ListFileError(base, None, "not a folder: a class-folder dataset needs root/<class>/<video>")
    exts = tuple(e.lower() for e in extensions)
    if classes is None:
        classes = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    records = []
    for label, name in enumerate(classes):
        folder = base / name
        if not folder.is_dir():
            raise ListFileError(base, None, f"class {name!r} has no folder {folder}; create it or drop the class")
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in exts:
                records.append(VideoRecord(path=path, label=label))
    return VideoList(records=tuple(records), classes=tuple(classes))


def read_video_list(
    source: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    classes: Sequence[str] | None = None,
) -> VideoList:
    """`read_class_folders` when ``source`` is a folder, else `read_list`.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "l.csv").write_text("path,label\\nv.mp4,0\\n")
        >>> read_video_list(d / "l.csv").records[0].line
        2
    """
    if Path(source).is_dir():
        return read_class_folders(source, classes=classes)
    return read_list(source, root=root, classes=classes)


def find_missing(records: Iterable[VideoRecord]) -> list[VideoRecord]:
    """The records whose file does not exist (or is not a regular file).

    Example:
        >>> find_missing([VideoRecord(Path("/nonexistent/v.mp4"), 0)])[0].path.name
        'v.mp4'
    """
    return [r for r in records if not r.path.is_file()]

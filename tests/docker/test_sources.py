"""The vendored schemas are exactly the published files that ``schemas/SOURCES.md`` names (by SHA-256), and
every schema file there is listed."""
from __future__ import annotations

import gzip
import hashlib
import re


def test_every_vendored_schema_matches_its_listed_checksum(schemas):
    table = (schemas.SCHEMAS / "SOURCES.md").read_text()
    listed = dict(re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", table, re.MULTILINE))
    on_disk = {p.relative_to(schemas.SCHEMAS).as_posix() for p in schemas.SCHEMAS.rglob("*.json*")}
    assert set(listed) == on_disk
    for name, expected in listed.items():
        data = (schemas.SCHEMAS / name).read_bytes()
        if name.endswith(".gz"):
            data = gzip.decompress(data)
        actual = hashlib.sha256(data).hexdigest()
        assert actual == expected, f"{name}: sha256 {actual}, SOURCES.md says {expected}"


def test_the_validators_use_the_listed_files(schemas):
    table = (schemas.SCHEMAS / "SOURCES.md").read_text()
    for path in schemas.K8S_SCHEMA_FILES.values():
        assert f"`{path.relative_to(schemas.SCHEMAS).as_posix()}`" in table

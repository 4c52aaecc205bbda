"""Wheels whose shared objects lost their symbol tables, for smaller images.

Many manylinux wheels ship their shared objects unstripped: uvloop's event loop is 13.6 MB and
1.6 MB stripped, and the serving image carried ~21 MB of such symbols (it was 0.5 MB
under its 250 MB limit). `strip --strip-unneeded` removes debug and local symbols and keeps the
dynamic ones a shared object is loaded and linked by (what `auditwheel repair --strip` does).

A wheel is rewritten member by member, in its order and with its dates and modes, and its RECORD
gets each stripped file's new hash and size; a wheel with nothing to strip is left alone, so
stripping a wheelhouse twice changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import subprocess
import tempfile
import zipfile
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
STRIP_RULES = "strip --strip-unneeded; not *.libs/; loadable segments"  # in the wheelhouse's stamp: new rules, fresh wheels


def strip_wheel(path: Path, strip: str) -> int:
    """Strip the ELF files inside the wheel at `path`, in place; returns the bytes saved."""
    with zipfile.ZipFile(path) as wheel:
        members = wheel.infolist()
        contents = {member.filename: wheel.read(member) for member in members}
    stripped = {}
    for name, data in contents.items():
        if ".libs/" not in name and _has_symbols(data):  # not the libraries auditwheel vendored (patchelf rewrote them)
            smaller = _stripped(data, strip)
            if smaller is not None and len(smaller) < len(data) and _loadable(smaller):
                stripped[name] = smaller
    if not stripped:
        return 0
    saved = sum(len(contents[name]) - len(data) for name, data in stripped.items())
    record = next(name for name in contents if name.endswith(".dist-info/RECORD"))
    contents.update(stripped)
    contents[record] = _record_with(contents[record], stripped)
    partial = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(partial, "w") as wheel:
        for member in members:  # the member's own name, date, mode and compression
            wheel.writestr(member, contents[member.filename])
    partial.replace(path)
    return saved


def _has_symbols(data: bytes) -> bool:
    """A 64-bit little-endian ELF file with a symbol table or debug sections (strip would shave a
    few bytes even off a stripped file, every time: those are left alone)."""
    if data[:4] != ELF_MAGIC or data[4] != 2 or data[5] != 1:  # ELFCLASS64, ELFDATA2LSB
        return False
    try:
        section_headers, = struct.unpack_from("<Q", data, 0x28)
        entry_size, count, names_index = struct.unpack_from("<HHH", data, 0x3A)

        def section(index: int) -> tuple[int, int, int]:  # (name offset, file offset, size)
            name, = struct.unpack_from("<I", data, section_headers + index * entry_size)
            offset, size = struct.unpack_from("<QQ", data, section_headers + index * entry_size + 0x18)
            return name, offset, size

        _, names_at, names_size = section(names_index)
        names = data[names_at:names_at + names_size]
        found = {names[start:names.index(b"\0", start)] for start, _, _ in map(section, range(count))}
    except (struct.error, ValueError):
        return False
    return b".symtab" in found or any(name.startswith(b".debug") for name in found)


def _loadable(data: bytes) -> bool:
    """Whether the dynamic loader accepts the object's loadable segments: each one's address and
    file offset agree modulo its alignment. strip breaks that in some files patchelf rewrote
    (numpy's OpenBLAS: "ELF load command address/offset not page-aligned")."""
    try:
        headers, = struct.unpack_from("<Q", data, 0x20)
        entry_size, count = struct.unpack_from("<HH", data, 0x36)
        for index in range(count):
            kind, = struct.unpack_from("<I", data, headers + index * entry_size)
            offset, address = struct.unpack_from("<QQ", data, headers + index * entry_size + 8)
            alignment, = struct.unpack_from("<Q", data, headers + index * entry_size + 48)
            if kind == 1 and alignment > 1 and (address - offset) % alignment:  # PT_LOAD
                return False
    except struct.error:
        return False
    return True


def _stripped(data: bytes, strip: str) -> bytes | None:
    """The object stripped, or None when strip refuses it (then it stays as it was)."""
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "object"
        target.write_bytes(data)
        if subprocess.run([strip, "--strip-unneeded", str(target)], capture_output=True).returncode != 0:
            return None
        return target.read_bytes()


def _record_with(record: bytes, changed: dict[str, bytes]) -> bytes:
    """RECORD (path,sha256=<urlsafe base64, unpadded>,size per line) with the changed files' entries."""
    lines = []
    for line in record.decode().splitlines():
        name = line.rsplit(",", 2)[0]
        if name in changed:
            digest = base64.urlsafe_b64encode(hashlib.sha256(changed[name]).digest()).rstrip(b"=").decode()
            line = f"{name},sha256={digest},{len(changed[name])}"
        lines.append(line)
    return ("\n".join(lines) + "\n").encode()

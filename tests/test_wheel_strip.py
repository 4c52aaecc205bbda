"""Stripping the images' wheels (toolkit/images/wheel_strip.py): smaller shared objects that still
load, a RECORD that matches them, vendored libraries left alone, and a second pass a no-op."""

from __future__ import annotations

import base64
import hashlib
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import httptools

from toolkit.images.wheel_strip import _has_symbols, _loadable, strip_wheel

PACKAGE = Path(httptools.__file__).parent  # its parser ships unstripped (~1 MB, ~0.2 MB stripped)


def _record_line(name: str, data: bytes) -> str:
    return f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"


def _wheel(path: Path) -> dict[str, bytes]:
    """A wheel of the installed httptools, plus one copy of its parser where auditwheel puts vendored libraries."""
    files = {f"httptools/{p.relative_to(PACKAGE).as_posix()}": p.read_bytes() for p in sorted(PACKAGE.rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts}
    parser = next(name for name in files if name.endswith(".so") and "parser/parser" in name)
    files["httptools.libs/libvendored.so"] = files[parser]
    record = "\n".join(_record_line(n, d) for n, d in files.items()) + "\nhttptools-0.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr("httptools-0.0.dist-info/RECORD", record)
    return files


def test_stripped_objects_are_smaller_still_load_and_match_the_record(tmp_path):
    strip = shutil.which("strip")
    assert strip, "binutils is one of the Makefile's APT_PACKAGES"
    original = _wheel(tmp_path / "httptools-0.0-py3-none-any.whl")
    parser = next(name for name in original if name.endswith(".so") and "parser/parser" in name)
    assert _has_symbols(original[parser])

    saved = strip_wheel(tmp_path / "httptools-0.0-py3-none-any.whl", strip)
    with zipfile.ZipFile(tmp_path / "httptools-0.0-py3-none-any.whl") as wheel:
        after = {name: wheel.read(name) for name in wheel.namelist()}
    assert saved == sum(len(original[n]) - len(after[n]) for n in original) and len(original[parser]) - len(after[parser]) > 500_000
    assert not _has_symbols(after[parser]) and _loadable(after[parser])
    assert after["httptools.libs/libvendored.so"] == original["httptools.libs/libvendored.so"]  # vendored: left alone
    record = after["httptools-0.0.dist-info/RECORD"].decode().splitlines()
    assert _record_line(parser, after[parser]) in record
    assert all(_record_line(n, d) in record for n, d in after.items() if not n.endswith("RECORD"))
    assert strip_wheel(tmp_path / "httptools-0.0-py3-none-any.whl", strip) == 0  # a second pass changes nothing

    # The stripped parser still loads and parses, in a fresh interpreter that imports this copy.
    (tmp_path / "site").mkdir()
    zipfile.ZipFile(tmp_path / "httptools-0.0-py3-none-any.whl").extractall(tmp_path / "site")
    check = ("import sys; sys.path.insert(0, sys.argv[1]); import httptools; assert httptools.__file__.startswith(sys.argv[1]); "
             "p = httptools.HttpRequestParser(object()); p.feed_data(b'GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n'); print(p.get_method())")
    result = subprocess.run([sys.executable, "-c", check, str(tmp_path / "site")], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "b'GET'", result.stderr


def test_an_object_whose_segments_strip_misaligned_is_not_loadable():
    """What strip did to numpy's OpenBLAS (patchelf had rewritten it): a PT_LOAD whose address and
    offset disagree modulo its alignment, which the loader refuses."""
    parser = next(p for p in PACKAGE.rglob("*.so") if "parser" in p.name).read_bytes()
    assert _loadable(parser)
    headers, = struct.unpack_from("<Q", parser, 0x20)
    entry_size, count = struct.unpack_from("<HH", parser, 0x36)
    broken = bytearray(parser)
    for index in range(count):
        at = headers + index * entry_size
        if struct.unpack_from("<I", parser, at)[0] == 1:  # the first PT_LOAD: shift its file offset by 16
            offset, = struct.unpack_from("<Q", parser, at + 8)
            struct.pack_into("<Q", broken, at + 8, offset + 16)
            break
    assert not _loadable(bytes(broken))

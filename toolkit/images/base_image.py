"""The offline Python 3.11 base image (Docker Hub is not reachable here): debootstrap bookworm
minbase + python3 from the Debian mirror apt uses, built once and reused."""

from __future__ import annotations

import shutil
import subprocess

from toolkit.errors import ToolkitError
from toolkit.lines import Lines, silent
from toolkit.paths import ProjectPaths

BASE_IMAGE = "toolkit-base:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Not needed at run time; removing them keeps the base image around 110 MB.
TRIM = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info")


def is_offline_base(image: str) -> bool:
    return image.startswith("toolkit-base:")


def ensure_base_image(client, paths: ProjectPaths, tag: str = BASE_IMAGE, on_line: Lines = silent) -> str:
    """Build the base image unless the engine has it; returns the tag."""
    import docker

    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ToolkitError(f"image {tag} is missing and debootstrap is not installed; `make setup` installs it.")
    rootfs = paths.state / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    on_line(f"building {tag} with debootstrap (about a minute, once)")
    result = subprocess.run([debootstrap, "--variant=minbase", "--include=python3,python3-venv", "bookworm", str(rootfs),
                             DEBIAN_MIRROR], capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolkitError(f"debootstrap failed (exit {result.returncode}): {result.stdout[-1500:]}{result.stderr[-1500:]}")
    for path in TRIM:
        shutil.rmtree(rootfs / path, ignore_errors=True)
    tarball = paths.state / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
    repository, _, version = tag.partition(":")
    client.api.import_image_from_file(str(tarball), repository=repository, tag=version or "latest")
    tarball.unlink()
    shutil.rmtree(rootfs, ignore_errors=True)
    return tag

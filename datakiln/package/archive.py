"""Reading and writing a package's files: a directory, or a zip archive of the same three files.

Reading checks sizes before it reads (a member claiming too much is refused unpacked) and while
it inflates (a member that inflates past its limit, whatever it claims, is refused at the limit:
zipfile itself inflates a member whole before it compares the size), then every hash against the
manifest, then the ONNX graph for references to files outside the package. Only stored and
deflated members are read: bzip2 and lzma members are refused.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path

from ..errors import BadPackage
from .format import FILES, MANIFEST, MAX_BYTES, parse_manifest, sha256
from .graph import check_graph


def write_archive(package_dir: Path, out: Path) -> Path:
    """A single-file zip of the package, byte-identical for identical packages."""
    data = archive_bytes(read_package_files(package_dir))
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    return out


def archive_bytes(files: dict[str, bytes]) -> bytes:
    """The zip of a package's three files: fixed names, order, dates and modes, so the same
    package always gives the same bytes (and the same sha256 in a registry)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in (MANIFEST, *FILES):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, files[name])
    return buf.getvalue()


def read_package_files(path: Path, data: bytes | None = None) -> dict[str, bytes]:
    """The three files of a package directory or archive, verified against the manifest's hashes.
    ``data``: the archive's bytes, already read (and hashed) by the caller; ``path`` names them."""
    if data is not None:
        files = _read_archive(path, data)
    elif path.is_dir():
        files = _read_dir(path)
    elif zipfile.is_zipfile(path):
        files = _read_archive(path)
    else:
        raise BadPackage(f"{path}: not a model package (a directory with {MANIFEST}, or its zip archive)")
    _verify(path, files)
    return files


def _too_big(path: Path, name: str, size: int) -> BadPackage:
    return BadPackage(
        f"{path}: {name} has {size:,} bytes; a package's {name} may have at most {MAX_BYTES[name]:,}. "
        "Refusing to read it"
    )


def _read_dir(path: Path) -> dict[str, bytes]:
    files = {}
    for name in (MANIFEST, *FILES):
        try:
            size = (path / name).stat().st_size
            if size > MAX_BYTES[name]:
                raise _too_big(path, name, size)
            files[name] = (path / name).read_bytes()
        except FileNotFoundError:
            raise BadPackage(
                f"{path}: no {name}; a package directory holds {MANIFEST} and {', '.join(FILES)}"
            ) from None
        except OSError as e:
            raise BadPackage(f"{path}: {name} cannot be read ({e.strerror or e})") from None
    return files


def _read_archive(path: Path, data: bytes | None = None) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(data) if data is not None else path) as z:
            infos = {i.filename: i for i in z.infolist()}
            if set(infos) != {MANIFEST, *FILES} or len(z.infolist()) != len(infos):
                raise BadPackage(
                    f"{path}: the archive holds {sorted(infos)[:10]}; a package archive holds exactly {MANIFEST}, "
                    f"{', '.join(FILES)}"
                )
            for name, info in infos.items():
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise BadPackage(
                        f"{path}: {name} is compressed with method {info.compress_type}; "
                        "a package archive is stored or deflated ('kiln package' writes one)"
                    )
                if info.file_size > MAX_BYTES[name]:
                    raise _too_big(path, name, info.file_size)
            return {name: _inflate(z, info, path) for name, info in infos.items()}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as e:
        raise BadPackage(
            f"{path}: the archive is damaged ({e}); fetch it again or rebuild it with 'kiln package'"
        ) from None


CHUNK = 1 << 20


def _inflate(z: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bytes:
    """A member's bytes, read a chunk at a time and refused as soon as they pass its limit."""
    limit, chunks, size = MAX_BYTES[info.filename], [], 0
    with z.open(info) as f:
        while chunk := f.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise _too_big(path, info.filename, size)
            chunks.append(chunk)
    return b"".join(chunks)


def _verify(path: Path, files: dict[str, bytes]) -> None:
    manifest = parse_manifest(files[MANIFEST], str(path))
    expected = manifest["files"]
    for name in FILES:
        if expected.get(name) != sha256(files[name]):
            raise BadPackage(
                f"{path}: {name} does not match the sha256 in {MANIFEST}; the package was modified or damaged. "
                "Rebuild it ('kiln build') or fetch it again"
            )
    check_graph(files["model.onnx"], f"{path}: model.onnx")

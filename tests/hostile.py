"""A corpus of hostile or broken uploads, generated here (no files shipped)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np

from tests.fixtures import dicom_bytes, jpeg_bytes, png_bytes, pydicom_file, zip_bytes


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(w: int, h: int, depth: int = 8, color: int = 0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b"")


def png_bomb(w: int = 10_000, h: int = 10_000) -> bytes:
    """A real, valid PNG of zeros: ~100 KB on disk, 100 Mpixel when decoded."""
    comp = zlib.compressobj(9)
    row = b"\0" * (w + 1)
    parts = [comp.compress(row) for _ in range(h)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(b"IEND", b"")


def jpeg_huge_header() -> bytes:
    data = bytearray(jpeg_bytes(16, 16))
    i = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, i + 5, 65000, 65000)
    return bytes(data)


def dicom_huge_header(frames: int = 1) -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(8, 8)))
    ds.Rows, ds.Columns = 65535, 65535
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.Rows = ds.Columns = 4096
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def dicom_bad_bits() -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(8, 8)))
    ds.BitsAllocated = 12
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def zip_with_raw_names(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name)
            zf.writestr(info, data)
    return buf.getvalue()


def zip_symlink() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link.png")
        info.create_system = 3
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def zip_encrypted_flag() -> bytes:
    data = bytearray(zip_bytes({"a.png": png_bytes()}, compression=zipfile.ZIP_STORED))
    # set bit 0 (encrypted) in the local header and the central directory entry
    data[6] |= 1
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 8] |= 1
    return bytes(data)


def zip_lying_size() -> bytes:
    """The central directory claims a tiny size; the data is larger."""
    payload = png_bytes(200, 200, seed=4)
    data = bytearray(zip_bytes({"a.png": payload}))
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 24, 100)  # uncompressed size
    lh = data.find(b"PK\x03\x04")
    struct.pack_into("<I", data, lh + 22, 100)
    return bytes(data)


def zip_bomb(mb: int = 60) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("big.png", "w", force_zip64=True) as fh:
            chunk = b"\0" * (1 << 20)
            for _ in range(mb):
                fh.write(chunk)
    return buf.getvalue()


def zip_many_small_bomb(n: int = 40, mb: int = 2) -> bytes:
    """Many entries, each highly compressible: the total ratio gives it away."""
    return zip_bytes({f"f{i}.png": b"\0" * (mb << 20) for i in range(n)})


def hostile_corpus() -> list[tuple[str, object]]:
    """(name, content) pairs; content is usually bytes, a few are wrong Python types."""
    c: list[tuple[str, object]] = []
    png = png_bytes(64, 64, seed=1)
    jpg = jpeg_bytes(64, 64, seed=2)
    dcm = dicom_bytes(64, 64, seed=3)
    rng = np.random.default_rng(1234)
    # empty, zeros, random noise
    c.append(("empty.png", b""))
    for n in (1, 16, 1024, 65536):
        c.append((f"zeros{n}.dcm", b"\0" * n))
    for i, n in enumerate((3, 100, 4096, 70000, 300000)):
        c.append((f"noise{i}.jpg", rng.integers(0, 256, n, dtype=np.uint8).tobytes()))
    # text and other formats under image names
    texts = {"text.dcm": b"hello, I am not a DICOM file\n", "page.png": b"<html><body>hi</body></html>",
             "data.jpg": b'{"patient": "x"}', "table.dcm": b"a,b,c\n1,2,3\n", "script.png": b"#!/bin/sh\nrm -rf /\n",
             "utf16.dcm": "not dicom".encode("utf-16")}
    c.extend(texts.items())
    c += [("doc.png", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"), ("anim.png", b"GIF89a" + b"\0" * 64),
          ("bitmap.dcm", b"BM" + b"\0" * 64), ("scan.jpg", b"II*\x00" + b"\0" * 64),
          ("archive.png", zlib.compress(b"x" * 100)[:2] + b"\x1f\x8b" + b"\0" * 40), ("gz.zip", b"\x1f\x8b\x08" + b"\0" * 64),
          ("seven.zip", b"7z\xbc\xaf\x27\x1c" + b"\0" * 32), ("rar.zip", b"Rar!\x1a\x07\x00" + b"\0" * 32)]
    # truncated PNG / JPEG / DICOM at many points
    for frac in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        c.append((f"trunc{int(frac * 100)}.png", png[: max(9, int(len(png) * frac))]))
        c.append((f"trunc{int(frac * 100)}.jpg", jpg[: max(4, int(len(jpg) * frac))]))
        c.append((f"trunc{int(frac * 100)}.dcm", dcm[: max(133, int(len(dcm) * frac))]))
    c.append(("MR_truncated.dcm", pydicom_file("MR_truncated.dcm")))
    # wrong or damaged magic
    c.append(("badsig.png", b"\x89PNX\r\n\x1a\n" + png[8:]))
    c.append(("badihdr.png", png[:12] + b"IHDX" + png[16:]))
    c.append(("badcrc.png", png[:29] + b"\0\0\0\0" + png[33:]))
    c.append(("jpegmagic.jpg", b"\xff\xd8\xff" + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()))
    c.append(("jpegnoeoi.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 10))
    c.append(("dicm_garbage.dcm", b"\0" * 128 + b"DICM" + rng.integers(0, 256, 500, dtype=np.uint8).tobytes()))
    c.append(("dicm_only.dcm", b"\0" * 128 + b"DICM"))
    c.append(("png_in_dicom_name.dcm", png[:40]))
    c.append(("polyglot.png", b"\x89PNG\r\n\x1a\n" + jpg))
    # giant headers and decompression bombs
    c.append(("huge100k.png", png_header_only(100_000, 100_000)))
    c.append(("huge_rgb16.png", png_header_only(60_000, 60_000, 16, 2)))
    c.append(("wide.png", png_header_only(2_000_000_000, 1)))
    c.append(("zero_width.png", png_header_only(0, 10)))
    c.append(("bomb.png", png_bomb()))
    c.append(("huge.jpg", jpeg_huge_header()))
    c.append(("huge.dcm", dicom_huge_header()))
    c.append(("huge_frames.dcm", dicom_huge_header(frames=500)))
    # DICOM without pixel data, and broken headers
    c.append(("nopixels.dcm", dicom_bytes(with_pixels=False)))
    for name in ("rtplan.dcm", "reportsi.dcm", "test-SR.dcm", "waveform_ecg.dcm", "rtstruct.dcm",
                 "rtplan_truncated.dcm", "ExplVR_LitEndNoMeta.dcm"):
        c.append((name, pydicom_file(name)))
    c.append(("badbits.dcm", dicom_bad_bits()))
    c.append(("short_pixels.dcm", dcm[:-100]))
    c.append(("zipMR.gz", pydicom_file("zipMR.gz")))
    # zip: traversal, absolute paths, symlinks, nesting, encryption, bombs, corruption
    for i, name in enumerate(("../evil.png", "a/../../evil.png", "/etc/evil.png", "C:/evil.png",
                              "..\\evil.png", "ok/../../../x.dcm")):
        c.append((f"slip{i}.zip", zip_with_raw_names([("fine.png", png), (name, png)])))
    c.append(("dirs_only.zip", zip_with_raw_names([("a/", b""), ("a/b/", b"")])))
    c.append(("symlink.zip", zip_symlink()))
    c.append(("nested.zip", zip_bytes({"inner.zip": zip_bytes({"a.png": png})})))
    c.append(("nested_noext.zip", zip_bytes({"inner": zip_bytes({"a.png": png})})))
    c.append(("nested_tar.zip", zip_bytes({"x.tar": b"\0" * 512})))
    c.append(("encrypted.zip", zip_encrypted_flag()))
    c.append(("lying.zip", zip_lying_size()))
    c.append(("bomb.zip", zip_bomb()))
    c.append(("many_bomb.zip", zip_many_small_bomb()))
    c.append(("too_many.zip", zip_bytes({f"d/{i}.txt.png": b"x" for i in range(2001)}, compression=zipfile.ZIP_STORED)))
    c.append(("deep.zip", zip_bytes({"a/b/c/d/e/f/g.png": png})))
    c.append(("dupe_names.zip", zip_with_raw_names([("a.png", png), ("A.PNG", png)])))
    c.append(("empty.zip", zip_bytes({})))
    c.append(("only_docs.zip", zip_bytes({"readme.txt": b"hi", "labels.csv": b"filename,label\n"})))
    c.append(("only_junk.zip", zip_bytes({"x.png": b"junk", "y.dcm": b"\0" * 200})))
    c.append(("bad_labels.zip", zip_bytes({"labels.csv": b"\xff\xfe\x00bad", "a/x.png": png})))
    c.append(("labels_nocols.zip", zip_bytes({"labels.csv": b"foo,bar\n1,2\n", "a/x.png": png})))
    zdata = zip_bytes({"a.png": png, "b.png": jpg})
    for frac in (0.2, 0.5, 0.8, 0.97):
        c.append((f"trunc{int(frac * 100)}.zip", zdata[: int(len(zdata) * frac)]))
    c.append(("zipmagic_only.zip", b"PK\x03\x04" + b"\0" * 60))
    # over the size limit
    c.append(("oversize.dcm", b"\0" * 128 + b"DICM" + b"\0" * (50 * 1024 * 1024)))
    # wrong Python types (a caller passing the wrong thing)
    c += [("none.png", None), ("str.png", "not bytes"), ("int.png", 12345), ("list.png", [1, 2, 3])]
    return c

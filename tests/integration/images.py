"""Sample images for the picture tests, built in memory at test time.

PNG, GIF and TIFF are encoded here with struct + zlib (the standard library
has no image codecs). JPEG and WebP need a DCT / VP8 encoder, so they are
tiny constants produced once with libvips 8.14 (a 32x24 and a 16x12 RGB
gradient) and pasted as hex; a JPEG carrying an EXIF GPS block is built by
splicing a hand-made APP1 segment into that JPEG. Every sample was checked
to decode with libvips when it was written.

sniff() identifies served bytes by their magic numbers and reads the pixel
size from the header, so tests can check the re-encoded format and the
avatar bound without an image library.
"""

import struct
import zlib

# 32x24 baseline JPEG, quality 75, no metadata (vips jpegsave strip=TRUE).
_JPEG_HEX = (
    "ffd8ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912130f141d1a1f"
    "1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ff"
    "db0043010909090c0b0c180d0d1832211c21323232323232323232323232323232323232"
    "3232323232323232323232323232323232323232323232323232323232323232ffc00011"
    "080018002003012200021101031101ffc400170001010101000000000000000000000000"
    "05000407ffc4001810000203000000000000000000000000000003052231ffc400170101"
    "01010100000000000000000000000005060407ffc4001b11000203000300000000000000"
    "000000000003020521043161ffda000c03010002110311003f00e5688dca89a2372a3688"
    "dca8a22372a34de6fa64afb1eb40d11b9513446e547111b9513446e5431bcdf4b9afb1eb"
    "4c888dca8a22372a4414d6c8e295ef9e689a2372a2688dca910639b22e6bdf3cd3ffd9"
)

# Payload of the "VP8 " chunk of a 16x12 lossy WebP (vips webpsave Q=50).
_VP8_HEX = (
    "f001009d012a10000c0002c04c25b00274ba0003082fbfc000fef49f9f02e7c0cae35fae"
    "238fffcb6f4df2234e8e4841a5c608d2a2fe7c4e30ba4f000000"
)

# Text planted in the EXIF block; the served picture must not contain it.
EXIF_SECRET = b"SecretCam GPS-Tracker"


def png(width=64, height=48):
    """An 8-bit RGB PNG with a gradient (so re-encoders cannot collapse it)."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type None
        for x in range(width):
            rows += bytes(((x * 255) // max(width - 1, 1), (y * 255) // max(height - 1, 1), 96))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
            + chunk(b"IEND", b""))


def gif(width=16, height=12):
    """A GIF89a with a 256-entry palette and 'uncompressed' LZW: every pixel
    is emitted as a literal 9-bit code and the table is reset before it would
    need 10-bit codes."""
    palette = b"".join(bytes((i, 255 - i, (i * 7) & 255)) for i in range(256))
    pixels = [((x + y) * 16) & 255 for y in range(height) for x in range(width)]
    clear, end = 256, 257
    codes = []
    for i in range(0, len(pixels), 250):
        codes.append(clear)
        codes.extend(pixels[i:i + 250])
    codes.append(end)
    bits = 0
    nbits = 0
    data = bytearray()
    for code in codes:  # LSB-first bit packing, 9 bits per code
        bits |= code << nbits
        nbits += 9
        while nbits >= 8:
            data.append(bits & 255)
            bits >>= 8
            nbits -= 8
    if nbits:
        data.append(bits & 255)
    blocks = bytearray()
    for i in range(0, len(data), 255):
        part = data[i:i + 255]
        blocks += bytes((len(part),)) + part
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF7, 0, 0) + palette
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x08" + bytes(blocks)
            + b"\x00\x3b")


def tiff(width=8, height=8):
    """An uncompressed little-endian RGB TIFF: a real image in a format the
    service must refuse (only JPEG, PNG, GIF and WebP are accepted)."""
    pixels = bytes((x * 30) & 255 for _ in range(height) for x in range(width * 3))
    entries = 9
    ifd_offset = 8
    bps_offset = ifd_offset + 2 + entries * 12 + 4
    data_offset = bps_offset + 6

    def entry(tag, kind, count, value):
        if kind == 3 and count == 1:
            return struct.pack("<HHIHH", tag, kind, count, value, 0)
        return struct.pack("<HHII", tag, kind, count, value)

    ifd = struct.pack("<H", entries) + b"".join((
        entry(256, 3, 1, width),
        entry(257, 3, 1, height),
        entry(258, 3, 3, bps_offset),
        entry(259, 3, 1, 1),
        entry(262, 3, 1, 2),
        entry(273, 4, 1, data_offset),
        entry(277, 3, 1, 3),
        entry(278, 3, 1, height),
        entry(279, 4, 1, len(pixels)),
    )) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + struct.pack("<HHH", 8, 8, 8) + pixels


def jpeg():
    """A 32x24 baseline JPEG without metadata."""
    return bytes.fromhex(_JPEG_HEX)


def webp():
    """A 16x12 simple-format (lossy, 'VP8 ' chunk only) WebP."""
    vp8 = bytes.fromhex(_VP8_HEX)
    chunk = b"VP8 " + struct.pack("<I", len(vp8)) + vp8 + (b"\x00" if len(vp8) % 2 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def _exif_gps_block():
    """A big-endian TIFF structure for an Exif APP1 segment: IFD0 with Make
    (EXIF_SECRET) and a GPSInfo pointer; the GPS IFD holds a latitude and
    longitude (52 deg 31' N, 13 deg 24' E)."""
    make = EXIF_SECRET + b"\x00"
    ifd0_offset = 8
    ifd0_size = 2 + 2 * 12 + 4
    make_offset = ifd0_offset + ifd0_size
    gps_offset = make_offset + len(make) + (len(make) & 1)
    gps_size = 2 + 4 * 12 + 4
    lat_offset = gps_offset + gps_size
    lon_offset = lat_offset + 24
    ifd0 = (struct.pack(">H", 2)
            + struct.pack(">HHII", 0x010F, 2, len(make), make_offset)
            + struct.pack(">HHII", 0x8825, 4, 1, gps_offset)
            + struct.pack(">I", 0))
    gps = (struct.pack(">H", 4)
           + struct.pack(">HHI", 1, 2, 2) + b"N\x00\x00\x00"
           + struct.pack(">HHII", 2, 5, 3, lat_offset)
           + struct.pack(">HHI", 3, 2, 2) + b"E\x00\x00\x00"
           + struct.pack(">HHII", 4, 5, 3, lon_offset)
           + struct.pack(">I", 0))
    lat = struct.pack(">IIIIII", 52, 1, 31, 1, 0, 1)
    lon = struct.pack(">IIIIII", 13, 1, 24, 1, 0, 1)
    tiff_block = (b"MM\x00\x2a" + struct.pack(">I", ifd0_offset) + ifd0 + make
                  + (b"\x00" if len(make) & 1 else b"") + gps + lat + lon)
    return b"Exif\x00\x00" + tiff_block


# Byte patterns of the GPS block in either byte order (an encoder may
# rewrite EXIF little-endian): the GPSInfo pointer entry in IFD0 (tag 0x8825,
# type LONG) and the latitude 52/1 31/1 0/1.
EXIF_GPS_NEEDLES = (
    struct.pack(">HH", 0x8825, 4), struct.pack("<HH", 0x8825, 4),
    struct.pack(">IIIIII", 52, 1, 31, 1, 0, 1), struct.pack("<IIIIII", 52, 1, 31, 1, 0, 1),
)


def jpeg_with_exif_gps():
    """jpeg() with an APP1 Exif segment (camera make + GPS position) after SOI."""
    base = jpeg()
    payload = _exif_gps_block()
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return base[:2] + app1 + base[2:]


SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32">'
       b'<rect width="32" height="32" fill="red"/></svg>\n')

TEXT = b"This is a plain text file, not a picture.\nIt was only renamed to picture.png.\n"


def sniff(data):
    """Returns (mime type, width, height) of a PNG, JPEG, GIF or WebP from
    its header, or (None, None, None) when the bytes are none of these."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return "image/png", width, height
    if data[:6] in (b"GIF87a", b"GIF89a"):
        width, height = struct.unpack("<HH", data[6:10])
        return "image/gif", width, height
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = data[12:16]
        if kind == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            width, height = struct.unpack("<HH", data[26:30])
            return "image/webp", width & 0x3FFF, height & 0x3FFF
        if kind == b"VP8L" and data[20] == 0x2F:
            bits = int.from_bytes(data[21:25], "little")
            return "image/webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if kind == b"VP8X":
            width = int.from_bytes(data[24:27], "little") + 1
            height = int.from_bytes(data[27:30], "little") + 1
            return "image/webp", width, height
        return "image/webp", None, None
    if data[:3] == b"\xff\xd8\xff":
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                break
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                pos += 2
                continue
            (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
                return "image/jpeg", width, height
            pos += 2 + length
        return "image/jpeg", None, None
    return None, None, None


def jpeg_segments(data):
    """Marker bytes of the JPEG segments before the scan (e.g. 0xE1 = APP1)."""
    markers = []
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA:
            break
        markers.append(marker)
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        pos += 2 + length
    return markers

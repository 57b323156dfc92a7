"""bench/_plot.py, the benches' PNG charts: the file is a PNG any reader decodes, of the size
asked for, and a series' line lands on the pixels its points map to."""

from __future__ import annotations

import struct
import zlib

from bench._plot import (
    BLUE,
    RED,
    WHITE,
    Canvas,
    Series,
    chart,
    frame_for,
    nice_step,
    png_bytes,
    stack,
)


def decode(data: bytes) -> tuple[int, int, list[bytes]]:
    """A strict reader of what png_bytes writes: (width, height, rows of RGB bytes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    kinds = [k for k, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height, depth, color, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1])
    assert (depth, color, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    stride = 1 + 3 * width
    assert len(raw) == height * stride
    rows = [raw[y * stride:(y + 1) * stride] for y in range(height)]
    assert all(row[0] == 0 for row in rows)  # filter type None
    return width, height, [row[1:] for row in rows]


def pixel(rows: list[bytes], x: int, y: int) -> tuple[int, int, int]:
    return rows[y][3 * x], rows[y][3 * x + 1], rows[y][3 * x + 2]


def test_the_file_is_a_png_of_the_size_asked_for_with_the_pixels_drawn() -> None:
    canvas = Canvas(37, 11)
    canvas.set(0, 0, RED)
    canvas.set(36, 10, BLUE)
    canvas.set(99, 99, RED)  # outside: clipped, not an error
    width, height, rows = decode(png_bytes(canvas))
    assert (width, height) == (37, 11)
    assert pixel(rows, 0, 0) == RED
    assert pixel(rows, 36, 10) == BLUE
    assert pixel(rows, 5, 5) == WHITE


def test_a_line_covers_the_pixels_between_its_ends_and_no_others() -> None:
    canvas = Canvas(20, 20)
    canvas.line(2, 3, 12, 3, RED)
    canvas.line(0, 0, 9, 9, BLUE)
    _, _, rows = decode(png_bytes(canvas))
    # (3, 3) is on both: the later line's colour.
    assert [x for x in range(20) if pixel(rows, x, 3) != WHITE] == list(range(2, 13))
    assert [x for x in range(20) if pixel(rows, x, 3) == BLUE] == [3]
    assert all(pixel(rows, i, i) == BLUE for i in range(10))
    inked = sum(pixel(rows, x, y) != WHITE for x in range(20) for y in range(20))
    assert inked == 11 + 10 - 1


def test_a_chart_puts_each_point_where_its_frame_maps_it() -> None:
    load = Series("load", [(0, 20), (50, 20), (50, 80), (100, 80)], RED, axis="right")
    count = Series("count", [(0, 2), (40, 6), (100, 6)], BLUE, step=True)
    canvas = chart([load, count], width=400, height=200, title="t", scale=1)
    frame, *_ = frame_for([load, count], width=400, height=200, scale=1)
    _, height, rows = decode(png_bytes(canvas))
    assert height == 200
    assert frame.y_left >= 6 and frame.y_right >= 80  # the highest values fit
    # A step series holds 2 until x=40, then jumps to 6; the other joins its points.
    for x in (0, 10, 39):
        assert pixel(rows, *frame.px(x, 2)) == BLUE
    for x in (41, 70, 100):
        assert pixel(rows, *frame.px(x, 6)) == BLUE
    px, py = frame.px(25, 20, "right")
    assert pixel(rows, px, py) == RED
    assert pixel(rows, *frame.px(75, 80, "right")) == RED
    # The right axis scales separately: 80 req/s is not drawn at 80 on the left scale.
    assert frame.px(75, 80, "right") != frame.px(75, 80)


def test_stacked_charts_keep_their_pixels_and_ticks_are_round() -> None:
    a, b = Canvas(10, 4, RED), Canvas(6, 3, BLUE)
    both = stack([a, b], gap=2)
    assert (both.width, both.height) == (10, 9)
    assert both.get(9, 3) == RED and both.get(5, 8) == BLUE and both.get(9, 8) == WHITE
    assert [nice_step(s) for s in (300, 8, 0.9, 1000)] == [50, 1, 0.2, 200]

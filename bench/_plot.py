"""Line charts as PNG files, with the standard library only (zlib and struct), for the benches.

    canvas = chart([Series("count", [(0, 2), (30, 6)], BLUE, step=True),
                    Series("load", [(0, 20), (30, 80)], RED, axis="right")],
                   title="cpu target", left_unit="replicas", right_unit="req/s")
    write_png(path, stack([canvas, other]))

A `Canvas` is an RGB pixel grid with lines (Bresenham), rectangles and text in a 3x5 bitmap font
(digits, letters shown in capitals, and . , : / % - + ( ) = > < _ and space; anything else is
drawn as a box), scaled by a whole factor. `chart()` draws series of (x, y) points on a grid with
axes: x from 0 (or the lowest x) to the highest x, the left axis from 0 to the highest left value,
the right axis likewise for series with axis="right"; the ticks are round numbers (1, 2 or 5
times a power of ten) and carry their labels; a legend names each series in its colour. A step
series holds its value until the next point (a count that changes at once); the others join
their points with straight lines. `png_bytes()` encodes a canvas as an 8-bit RGB PNG (one IDAT,
filter 0 on every row), which every viewer reads.
"""

from __future__ import annotations

import itertools
import math
import pathlib
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
GRID: Color = (225, 225, 225)
BLUE: Color = (31, 90, 200)
RED: Color = (210, 50, 40)
GREEN: Color = (30, 150, 60)
GREY: Color = (120, 120, 120)
ORANGE: Color = (230, 140, 20)
PURPLE: Color = (170, 120, 210)

# 3x5 glyphs, rows top to bottom separated by "|" ("#" = ink).
_FONT_ROWS: dict[str, str] = {
    "0": "###|#.#|#.#|#.#|###", "1": ".#.|##.|.#.|.#.|###", "2": "###|..#|###|#..|###",
    "3": "###|..#|.##|..#|###", "4": "#.#|#.#|###|..#|..#", "5": "###|#..|###|..#|###",
    "6": "###|#..|###|#.#|###", "7": "###|..#|..#|.#.|.#.", "8": "###|#.#|###|#.#|###",
    "9": "###|#.#|###|..#|###",
    "A": ".#.|#.#|###|#.#|#.#", "B": "##.|#.#|##.|#.#|##.", "C": ".##|#..|#..|#..|.##",
    "D": "##.|#.#|#.#|#.#|##.", "E": "###|#..|##.|#..|###", "F": "###|#..|##.|#..|#..",
    "G": ".##|#..|#.#|#.#|.##", "H": "#.#|#.#|###|#.#|#.#", "I": "###|.#.|.#.|.#.|###",
    "J": "..#|..#|..#|#.#|.#.", "K": "#.#|#.#|##.|#.#|#.#", "L": "#..|#..|#..|#..|###",
    "M": "#.#|###|###|#.#|#.#", "N": "##.|#.#|#.#|#.#|#.#", "O": ".#.|#.#|#.#|#.#|.#.",
    "P": "##.|#.#|##.|#..|#..", "Q": ".#.|#.#|#.#|##.|.##", "R": "##.|#.#|##.|#.#|#.#",
    "S": ".##|#..|.#.|..#|##.", "T": "###|.#.|.#.|.#.|.#.", "U": "#.#|#.#|#.#|#.#|###",
    "V": "#.#|#.#|#.#|#.#|.#.", "W": "#.#|#.#|###|###|#.#", "X": "#.#|#.#|.#.|#.#|#.#",
    "Y": "#.#|#.#|.#.|.#.|.#.", "Z": "###|..#|.#.|#..|###",
    ".": "...|...|...|...|.#.", ",": "...|...|...|.#.|#..", ":": "...|.#.|...|.#.|...",
    "/": "..#|..#|.#.|#..|#..", "%": "#.#|..#|.#.|#..|#.#", "-": "...|...|###|...|...",
    "+": "...|.#.|###|.#.|...", "(": ".#.|#..|#..|#..|.#.", ")": ".#.|..#|..#|..#|.#.",
    "=": "...|###|...|###|...", ">": "#..|.#.|..#|.#.|#..", "<": "..#|.#.|#..|.#.|..#",
    "_": "...|...|...|...|###", " ": "...|...|...|...|...",
}


def _glyph(rows: str) -> tuple[tuple[int, int], ...]:
    lines = rows.split("|")
    if len(lines) != 5 or any(len(line) != 3 for line in lines):
        raise ValueError(f"glyph {rows!r}: 5 rows of 3 cells")
    return tuple((x, y) for y, line in enumerate(lines) for x, c in enumerate(line) if c == "#")


FONT: dict[str, tuple[tuple[int, int], ...]] = {c: _glyph(r) for c, r in _FONT_ROWS.items()}
_UNKNOWN = _glyph("###|#.#|#.#|#.#|###")
GLYPH_W, GLYPH_H = 3, 5


class Canvas:
    """An RGB image, white at first; (0, 0) is the top left pixel. Drawing outside is clipped."""

    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        if not (1 <= width <= 10_000 and 1 <= height <= 10_000):
            raise ValueError(f"canvas {width}x{height}: each side within 1..10000")
        self.width = width
        self.height = height
        self.pixels = bytearray(bytes(background) * (width * height))

    def get(self, x: int, y: int) -> Color:
        i = 3 * (y * self.width + x)
        return (self.pixels[i], self.pixels[i + 1], self.pixels[i + 2])

    def set(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = 3 * (y * self.width + x)
            self.pixels[i:i + 3] = bytes(color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: Color, width: int = 1) -> None:
        """Bresenham's line, both ends included; `width` > 1 thickens it downwards and right."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        for _ in range(dx - dy + 1):  # dx + |dy| + 1 points at most
            for k in range(width):
                self.set(x0 + k, y0, color)
                self.set(x0, y0 + k, color)
            if x0 == x1 and y0 == y1:
                break
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def rect(self, x: int, y: int, w: int, h: int, color: Color) -> None:
        for yy in range(max(0, y), min(self.height, y + h)):
            for xx in range(max(0, x), min(self.width, x + w)):
                self.set(xx, yy, color)

    def text(self, x: int, y: int, s: str, color: Color = BLACK, scale: int = 1) -> int:
        """Draws `s` with its top left at (x, y); returns the x after its last character."""
        for ch in s:
            for gx, gy in FONT.get(ch.upper(), _UNKNOWN):
                self.rect(x + gx * scale, y + gy * scale, scale, scale, color)
            x += (GLYPH_W + 1) * scale
        return x

    def paste(self, other: Canvas, x: int, y: int) -> None:
        for row in range(other.height):
            if not 0 <= y + row < self.height:
                continue
            left, right = max(0, x), min(self.width, x + other.width)
            if left >= right:
                continue
            src = 3 * (row * other.width + (left - x))
            dst = 3 * ((y + row) * self.width + left)
            self.pixels[dst:dst + 3 * (right - left)] = other.pixels[src:src + 3 * (right - left)]


def text_width(s: str, scale: int = 1) -> int:
    return len(s) * (GLYPH_W + 1) * scale - (scale if s else 0)


def png_bytes(canvas: Canvas) -> bytes:
    """The canvas as a PNG: 8-bit RGB, not interlaced, one IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    stride = 3 * canvas.width
    raw = b"".join(b"\x00" + bytes(canvas.pixels[y * stride:(y + 1) * stride])
                   for y in range(canvas.height))
    header = struct.pack(">IIBBBBB", canvas.width, canvas.height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write_png(path: pathlib.Path, canvas: Canvas) -> None:
    path.write_bytes(png_bytes(canvas))


def stack(canvases: Sequence[Canvas], gap: int = 8) -> Canvas:
    """The canvases one below the other, left-aligned."""
    if not canvases:
        raise ValueError("nothing to stack")
    out = Canvas(max(c.width for c in canvases),
                 sum(c.height for c in canvases) + gap * (len(canvases) - 1))
    y = 0
    for c in canvases:
        out.paste(c, 0, y)
        y += c.height + gap
    return out


def nice_step(span: float, most: int = 8) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that cuts `span` into at most `most`."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / most
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * power >= raw:
            return m * power
    return 10 * power  # not reached


def _label(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:g}"


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]
    color: Color
    axis: str = "left"  # or "right"
    step: bool = False  # holds each value until the next point


@dataclass(frozen=True, slots=True)
class Frame:
    """Where a chart's data lands: the plot area in pixels and the ranges it shows."""

    left: int
    top: int
    width: int
    height: int
    x0: float
    x1: float
    y_left: float  # the left axis's top value (its bottom is 0)
    y_right: float

    def px(self, x: float, y: float, axis: str = "left") -> tuple[int, int]:
        top = self.y_left if axis == "left" else self.y_right
        fx = (x - self.x0) / (self.x1 - self.x0)
        fy = y / top
        return (self.left + round(fx * (self.width - 1)),
                self.top + self.height - 1 - round(fy * (self.height - 1)))


def frame_for(series: Sequence[Series], *, width: int, height: int,
              scale: int = 2) -> tuple[Frame, float, float, float]:
    """The frame and the tick steps (x, left, right) chart() uses for these series."""
    xs = [x for s in series for x, _ in s.points]
    x0 = min(xs, default=0.0)
    x1 = max(xs, default=1.0)
    if x1 <= x0:
        x1 = x0 + 1.0

    def top(axis: str) -> tuple[float, float]:
        ys = [y for s in series if s.axis == axis for _, y in s.points]
        highest = max(ys, default=1.0)
        step = nice_step(highest if highest > 0 else 1.0, 6)
        # Headroom: a line at the highest value stays clear of the top border.
        return max(step, math.floor(highest / step + 1) * step), step

    y_left, left_step = top("left")
    y_right, right_step = top("right")
    char = (GLYPH_W + 1) * scale
    margin_left = 6 * char
    margin_right = 6 * char if any(s.axis == "right" for s in series) else 2 * char
    margin_top = 4 * char
    margin_bottom = 5 * char
    frame = Frame(left=margin_left, top=margin_top, width=width - margin_left - margin_right,
                  height=height - margin_top - margin_bottom, x0=x0, x1=x1, y_left=y_left,
                  y_right=y_right)
    if frame.width < 10 or frame.height < 10:
        raise ValueError(f"chart {width}x{height}: too small for its margins")
    return frame, nice_step(x1 - x0, 10), left_step, right_step


def chart(series: Sequence[Series], *, width: int = 900, height: int = 320, title: str = "",
          x_unit: str = "s", left_unit: str = "", right_unit: str = "",
          marks: Sequence[tuple[float, str]] = (), scale: int = 2) -> Canvas:
    """A chart of `series` (see the module docstring); `marks` are vertical dashed lines at an
    x, labelled at the top (a load step, say)."""
    canvas = Canvas(width, height)
    frame, x_step, left_step, right_step = frame_for(series, width=width, height=height,
                                                     scale=scale)
    char_h = GLYPH_H * scale
    bottom = frame.top + frame.height - 1
    right = frame.left + frame.width - 1
    # Grid and ticks: x every x_step, y every left_step (the right axis labels its own).
    x = math.ceil(frame.x0 / x_step) * x_step
    while x <= frame.x1 + 1e-9:
        px, _ = frame.px(x, 0)
        canvas.line(px, frame.top, px, bottom, GRID)
        label = _label(x)
        canvas.text(px - text_width(label, scale) // 2, bottom + 2 * scale, label, BLACK, scale)
        x += x_step
    y = 0.0
    while y <= frame.y_left + 1e-9:
        _, py = frame.px(frame.x0, y)
        canvas.line(frame.left, py, right, py, GRID)
        label = _label(y)
        canvas.text(frame.left - text_width(label, scale) - 2 * scale, py - char_h // 2, label,
                    BLACK, scale)
        y += left_step
    if any(s.axis == "right" for s in series):
        y = 0.0
        while y <= frame.y_right + 1e-9:
            _, py = frame.px(frame.x0, y, "right")
            canvas.line(right - 2 * scale, py, right, py, BLACK)
            canvas.text(right + 3 * scale, py - char_h // 2, _label(y), BLACK, scale)
            y += right_step
    # Axes.
    canvas.line(frame.left, frame.top, frame.left, bottom, BLACK)
    canvas.line(frame.left, bottom, right, bottom, BLACK)
    canvas.line(right, frame.top, right, bottom, BLACK)
    # Marks.
    for mx, name in marks:
        px, _ = frame.px(mx, 0)
        for py in range(frame.top, bottom, 4 * scale):
            canvas.line(px, py, px, min(bottom, py + 2 * scale - 1), GREY)
        canvas.text(px + 2 * scale, frame.top + 2 * scale, name, GREY, scale)
    # Series, in order (the last on top).
    for s in series:
        points = [frame.px(x, y, s.axis) for x, y in s.points]
        for (ax, ay), (bx, by) in itertools.pairwise(points):
            if s.step:
                canvas.line(ax, ay, bx, ay, s.color, scale)
                canvas.line(bx, ay, bx, by, s.color, scale)
            else:
                canvas.line(ax, ay, bx, by, s.color, scale)
        if len(points) == 1:
            canvas.rect(points[0][0], points[0][1], scale, scale, s.color)
    # Title, units and legend.
    canvas.text(frame.left, scale * 2, title, BLACK, scale)
    canvas.text(2 * scale, frame.top - char_h - 3 * scale, left_unit, BLACK, scale)
    if right_unit:
        canvas.text(right - text_width(right_unit, scale), frame.top - char_h - 3 * scale,
                    right_unit, BLACK, scale)
    canvas.text(right - text_width(x_unit, scale), bottom + 2 * scale + char_h + 3 * scale,
                x_unit, BLACK, scale)
    lx = frame.left + text_width(title, scale) + 8 * scale
    for s in series:
        canvas.rect(lx, scale * 2 + char_h // 2 - scale // 2, 5 * scale, scale, s.color)
        lx = canvas.text(lx + 7 * scale, scale * 2, s.name, s.color, scale) + 5 * scale
    return canvas

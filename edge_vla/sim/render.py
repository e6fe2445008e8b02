"""Themes and drawing: turns a task's widgets into an RGB frame with Pillow.

Speed comes from layers: everything that cannot change (panels, static text,
buttons) is drawn once per task into a static image; each frame copies it and
draws only the live widgets, then the dim overlay and the cached dialog.
Type faces: Pillow's bundled one (``load_default``) or one of Debian's DejaVu and
Liberation faces (``FONTS``), picked per task by the world: a screen the daemon
watches is set in whatever face its toolkit uses, so the student must not learn
one face's glyphs. A face whose file is missing falls back to Pillow's, with a log line.
"""

from __future__ import annotations

import colorsys
import random
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edge_vla.sim.scene import (
    Banner,
    Box,
    Button,
    Chart,
    Checkbox,
    Dialog,
    ListView,
    Panel,
    Text,
    TextField,
    Widget,
)

if TYPE_CHECKING:
    from edge_vla.sim.tasks import Task

RGB = tuple[int, int, int]
THEMES: tuple[str, ...] = ("light", "dark", "high_contrast", "retro", "solarized")
FONT_DIR = Path("/usr/share/fonts/truetype")  # tools/setup.sh installs fonts-dejavu-core/-extra, fonts-liberation
FONTS: dict[str, str | None] = {
    "aileron": None,  # Pillow's bundled face: nothing to install
    "dejavu-sans": "dejavu/DejaVuSans.ttf",
    "dejavu-sans-condensed": "dejavu/DejaVuSansCondensed.ttf",
    "dejavu-serif": "dejavu/DejaVuSerif.ttf",
    "dejavu-sans-mono": "dejavu/DejaVuSansMono.ttf",
    "liberation-sans": "liberation/LiberationSans-Regular.ttf",
    "liberation-sans-narrow": "liberation/LiberationSansNarrow-Regular.ttf",
    "liberation-serif": "liberation/LiberationSerif-Regular.ttf",
    "liberation-mono": "liberation/LiberationMono-Regular.ttf",
}


@dataclass(frozen=True)
class Theme:
    name: str
    bg: RGB
    header_bg: RGB
    header_fg: RGB
    sidebar_bg: RGB
    surface: RGB
    border: RGB
    text: RGB
    muted: RGB
    primary: RGB
    on_primary: RGB
    secondary: RGB
    on_secondary: RGB
    danger: RGB
    input_bg: RGB
    focus: RGB
    error_bg: RGB
    error_fg: RGB
    success_bg: RGB
    success_fg: RGB
    selection: RGB
    chart_line: RGB
    grid: RGB
    overlay: RGB
    overlay_alpha: float
    radius: float  # corner radius as a fraction of a control's height (0.5 = pill)
    border_w: int
    shadow: bool
    bevel: bool  # 3-D raised/sunken controls, as in classic desktop toolkits
    upper_buttons: bool
    switches: bool  # draw checkboxes as toggle switches
    outline_buttons: bool
    font_scale: float
    font: str = "aileron"  # a key of FONTS


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(1.0, max(0.0, s)), min(1.0, max(0.0, v)))
    return (round(r * 255), round(g * 255), round(b * 255))


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """``a`` moved a fraction ``t`` towards ``b``."""
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t),
            round(a[2] + (b[2] - a[2]) * t))


def _ink_on(c: RGB) -> RGB:
    lum = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
    return (20, 20, 20) if lum > 150 else (255, 255, 255)


def _jitter(c: RGB, rng: random.Random, amount: int) -> RGB:
    d = rng.randint(-amount, amount)
    return (max(0, min(255, c[0] + d)), max(0, min(255, c[1] + d)), max(0, min(255, c[2] + d)))


def make_theme(name: str, rng: random.Random) -> Theme:
    """A theme of the named family with per-seed colour and shape variation."""
    if name not in THEMES:
        raise ValueError(f"unknown theme {name!r}; expected one of {', '.join(THEMES)}")
    hue = rng.choice([0.58, 0.62, 0.66, 0.42, 0.75, 0.05, 0.93, 0.52, 0.0]) + rng.uniform(-0.02, 0.02)
    common: dict[str, Any] = dict(
        upper_buttons=rng.random() < 0.25, switches=rng.random() < 0.3,
        outline_buttons=rng.random() < 0.15, font_scale=rng.uniform(0.9, 1.15),
        shadow=rng.random() < 0.6, bevel=False, border_w=1,
        radius=rng.choice([0.0, 0.1, 0.15, 0.2, 0.25, 0.5]),
    )
    if name == "light":
        primary = _hsv(hue, rng.uniform(0.6, 0.85), rng.uniform(0.6, 0.85))
        bg = _jitter((rng.choice([244, 247, 250, 255]),) * 3, rng, 3)
        header = rng.choice([primary, (255, 255, 255), (33, 37, 41), _hsv(hue, 0.5, 0.35)])
        return Theme(
            name=name, bg=bg, header_bg=header, header_fg=_ink_on(header),
            sidebar_bg=mix(bg, (0, 0, 0), 0.04), surface=(255, 255, 255), border=(206, 212, 218),
            text=_jitter((33, 37, 41), rng, 12), muted=(108, 117, 125), primary=primary,
            on_primary=_ink_on(primary), secondary=(233, 236, 239), on_secondary=(33, 37, 41),
            danger=(200, 35, 51), input_bg=(255, 255, 255), focus=primary,
            error_bg=(248, 215, 218), error_fg=(132, 32, 41), success_bg=(209, 231, 221),
            success_fg=(15, 81, 50), selection=mix(primary, (255, 255, 255), 0.8),
            chart_line=primary, grid=(230, 233, 236), overlay=(0, 0, 0),
            overlay_alpha=rng.uniform(0.35, 0.55), **common)
    if name == "dark":
        primary = _hsv(hue, rng.uniform(0.45, 0.7), rng.uniform(0.75, 0.95))
        bg = _jitter((24, 26, 31), rng, 6)
        surface = mix(bg, (255, 255, 255), rng.uniform(0.05, 0.1))
        return Theme(
            name=name, bg=bg, header_bg=mix(bg, (0, 0, 0), 0.3), header_fg=(235, 237, 240),
            sidebar_bg=mix(bg, (255, 255, 255), 0.03), surface=surface,
            border=mix(surface, (255, 255, 255), 0.18), text=(230, 232, 235), muted=(150, 156, 165),
            primary=primary, on_primary=_ink_on(primary), secondary=mix(surface, (255, 255, 255), 0.12),
            on_secondary=(230, 232, 235), danger=(220, 70, 80), input_bg=mix(bg, (0, 0, 0), 0.2),
            focus=primary, error_bg=(80, 28, 32), error_fg=(255, 170, 170),
            success_bg=(25, 70, 45), success_fg=(160, 235, 190), selection=mix(surface, primary, 0.35),
            chart_line=primary, grid=mix(surface, (255, 255, 255), 0.08), overlay=(0, 0, 0),
            overlay_alpha=rng.uniform(0.5, 0.7), **common)
    if name == "high_contrast":
        accent = rng.choice([(255, 255, 0), (0, 255, 255), (255, 255, 255)])
        common.update(shadow=False, border_w=rng.choice([2, 3]), outline_buttons=rng.random() < 0.5)
        return Theme(
            name=name, bg=(0, 0, 0), header_bg=(0, 0, 0), header_fg=(255, 255, 255),
            sidebar_bg=(0, 0, 0), surface=(0, 0, 0), border=(255, 255, 255), text=(255, 255, 255),
            muted=(220, 220, 220), primary=accent, on_primary=(0, 0, 0), secondary=(0, 0, 0),
            on_secondary=(255, 255, 255), danger=(255, 90, 90), input_bg=(0, 0, 0),
            focus=(0, 255, 255) if accent != (0, 255, 255) else (255, 255, 0),
            error_bg=(0, 0, 0), error_fg=(255, 110, 110), success_bg=(0, 0, 0),
            success_fg=(120, 255, 120), selection=(40, 40, 140), chart_line=accent,
            grid=(90, 90, 90), overlay=(0, 0, 0), overlay_alpha=0.7, **common)
    if name == "retro":
        grey = _jitter((192, 192, 192), rng, 4)
        title = rng.choice([(0, 0, 128), (128, 0, 0), (0, 100, 100), (64, 64, 64)])
        common.update(radius=0.0, bevel=True, shadow=False, outline_buttons=False, switches=False)
        return Theme(
            name=name, bg=rng.choice([(0, 128, 128), grey, (58, 110, 165)]), header_bg=title,
            header_fg=(255, 255, 255), sidebar_bg=grey, surface=grey, border=(128, 128, 128),
            text=(0, 0, 0), muted=(64, 64, 64), primary=grey, on_primary=(0, 0, 0), secondary=grey,
            on_secondary=(0, 0, 0), danger=grey, input_bg=(255, 255, 255), focus=(0, 0, 0),
            error_bg=(255, 255, 225), error_fg=(160, 0, 0), success_bg=(255, 255, 225),
            success_fg=(0, 100, 0), selection=(0, 0, 128), chart_line=(0, 128, 0),
            grid=(160, 160, 160), overlay=(0, 0, 0), overlay_alpha=0.3, **common)
    # solarized: warm low-contrast palette, light or dark base
    darkbase = rng.random() < 0.4
    bg = (0, 43, 54) if darkbase else (253, 246, 227)
    surface = (7, 54, 66) if darkbase else (238, 232, 213)
    text = (147, 161, 161) if darkbase else (88, 110, 117)
    primary = rng.choice([(38, 139, 210), (42, 161, 152), (133, 153, 0), (211, 54, 130), (108, 113, 196)])
    return Theme(
        name=name, bg=bg, header_bg=surface, header_fg=text, sidebar_bg=surface, surface=surface,
        border=mix(surface, text, 0.35), text=text, muted=mix(text, bg, 0.35), primary=primary,
        on_primary=(253, 246, 227), secondary=mix(surface, text, 0.12), on_secondary=text,
        danger=(220, 50, 47), input_bg=bg, focus=primary, error_bg=mix(bg, (220, 50, 47), 0.2),
        error_fg=(220, 50, 47) if not darkbase else (255, 140, 130),
        success_bg=mix(bg, (133, 153, 0), 0.25), success_fg=(133, 153, 0) if darkbase else (70, 90, 0),
        selection=mix(surface, primary, 0.3), chart_line=primary, grid=mix(surface, text, 0.15),
        overlay=(0, 20, 25), overlay_alpha=rng.uniform(0.4, 0.6), **common)


# A FreeType face is not safe to use from two threads at once, and fonts are shared.
_FT_LOCK = threading.Lock()


@lru_cache(maxsize=None)
def _font_file(face: str) -> Path | None:
    if face not in FONTS:
        raise ValueError(f"unknown font {face!r}; expected one of {', '.join(FONTS)}")
    rel = FONTS[face]
    if rel is None:
        return None
    path = FONT_DIR / rel
    if not path.is_file():
        structlog.get_logger(__name__).warning("sim_font_missing", font=face, path=str(path),
                                               hint="run tools/setup.sh; drawing in Pillow's face")
        return None
    return path


@lru_cache(maxsize=512)
def font(size: int, face: str) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    size = max(6, int(size))
    path = _font_file(face)
    return ImageFont.load_default(size=size) if path is None else ImageFont.truetype(str(path), size)


@lru_cache(maxsize=8192)
def text_width(text: str, size: int, face: str) -> int:
    with _FT_LOCK:
        return int(round(font(size, face).getlength(text)))


def display_label(button: Button, theme: Theme) -> str:
    return button.label.upper() if theme.upper_buttons and button.style != "close" else button.label


# --- primitives -------------------------------------------------------------------------------

def _inclusive(box: Box) -> tuple[int, int, int, int]:
    return (box[0], box[1], box[2] - 1, box[3] - 1)


def _rect(d: ImageDraw.ImageDraw, box: Box, fill: RGB | None, outline: RGB | None = None,
          width: int = 1, radius: int = 0) -> None:
    if box[2] - box[0] < 1 or box[3] - box[1] < 1:
        return
    r = min(radius, (box[2] - box[0]) // 2, (box[3] - box[1]) // 2)
    if r > 0:
        d.rounded_rectangle(_inclusive(box), r, fill=fill, outline=outline, width=width)
    else:
        d.rectangle(_inclusive(box), fill=fill, outline=outline, width=width)


def _bevel(d: ImageDraw.ImageDraw, box: Box, sunken: bool = False) -> None:
    x0, y0, x1, y1 = box[0], box[1], box[2] - 1, box[3] - 1
    light, dark = ((128, 128, 128), (255, 255, 255)) if sunken else ((255, 255, 255), (64, 64, 64))
    d.line([(x0, y1), (x0, y0), (x1, y0)], fill=light, width=2)
    d.line([(x0, y1), (x1, y1), (x1, y0)], fill=dark, width=2)


def _text(d: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, fill: RGB,
          face: str, anchor: str = "lm", bold: bool = False) -> None:
    if not text:
        return
    stroke = 1 if bold and size >= 20 else 0
    mask, dx, dy = _text_mask(text, size, anchor, stroke, face)
    d.bitmap((int(round(xy[0])) + dx, int(round(xy[1])) + dy), mask, fill=fill)


@lru_cache(maxsize=4096)
def _text_mask(text: str, size: int, anchor: str, stroke: int, face: str) -> tuple[Image.Image, int, int]:
    """A string's coverage mask and its offset from the anchor point.

    FreeType rendering is most of a frame's cost and UIs repeat their labels, so each
    (text, size) is rasterised once; drawing is then a masked fill. The canvas is
    generous and cropped to the ink, which is cheaper than measuring first.
    """
    m = size + 2
    w = len(text) * size + 2 * m
    ax = {"l": m, "m": w // 2, "r": w - m}[anchor[0]]
    ay = int(1.5 * m)
    canvas = Image.new("L", (w, 3 * m), 0)
    with _FT_LOCK:
        ImageDraw.Draw(canvas).text((ax, ay), text, font=font(size, face), fill=255, anchor=anchor,
                                    stroke_width=stroke, stroke_fill=255 if stroke else None)
    ink = canvas.getbbox()
    if ink is None:
        return Image.new("L", (1, 1), 0), 0, 0
    return canvas.crop(ink), ink[0] - ax, ink[1] - ay


def _cross(d: ImageDraw.ImageDraw, box: Box, fill: RGB) -> None:
    x0, y0, x1, y1 = box
    m = (x1 - x0) * 0.3
    w = max(2, (x1 - x0) // 12)
    d.line([(x0 + m, y0 + m), (x1 - 1 - m, y1 - 1 - m)], fill=fill, width=w)
    d.line([(x0 + m, y1 - 1 - m), (x1 - 1 - m, y0 + m)], fill=fill, width=w)


# --- widgets ----------------------------------------------------------------------------------

def _corner(box: Box, theme: Theme) -> int:
    return int(round((box[3] - box[1]) * theme.radius))


def draw_panel(d: ImageDraw.ImageDraw, p: Panel, th: Theme) -> None:
    if p.style == "header":
        _rect(d, p.box, th.header_bg)
        if th.header_bg == th.bg or th.name == "high_contrast":
            d.line([(p.box[0], p.box[3] - 1), (p.box[2], p.box[3] - 1)], fill=th.border, width=th.border_w)
    elif p.style == "sidebar":
        _rect(d, p.box, th.sidebar_bg)
        d.line([(p.box[2] - 1, p.box[1]), (p.box[2] - 1, p.box[3])], fill=th.border, width=th.border_w)
    else:
        r = int(round(min(24, (p.box[3] - p.box[1]) * 0.5) * th.radius)) + (4 if th.radius else 0)
        if th.shadow:
            off = max(2, (p.box[3] - p.box[1]) // 120)
            sh = (p.box[0] + off, p.box[1] + off * 2, p.box[2] + off, p.box[3] + off * 2)
            _rect(d, sh, mix(th.bg, (0, 0, 0), 0.18), radius=r)
        _rect(d, p.box, th.surface, outline=None if th.bevel else th.border, width=th.border_w, radius=r)
        if th.bevel:
            _bevel(d, p.box)


def draw_text(d: ImageDraw.ImageDraw, t: Text, th: Theme) -> None:
    colour = {"logo": th.header_fg, "nav": mix(th.header_fg, th.header_bg, 0.2),
              "side": th.muted, "muted": th.muted}.get(t.role, th.text)
    _text(d, (t.box[0], (t.box[1] + t.box[3]) / 2), t.label, t.size, colour, bold=t.bold, face=th.font)


def draw_button(d: ImageDraw.ImageDraw, b: Button, th: Theme) -> None:
    box = b.box
    if b.style == "close":
        _cross(d, box, th.muted if b.enabled else mix(th.muted, th.surface, 0.5))
        return
    fill: RGB | None
    if b.style == "primary":
        fill, ink, outline = th.primary, th.on_primary, None
        if th.outline_buttons:
            fill, ink, outline = None, th.primary, th.primary
    elif b.style == "danger":
        fill, ink, outline = th.danger, _ink_on(th.danger), None
    elif b.style == "ghost":
        fill, ink, outline = None, th.primary if not th.bevel else th.text, None
    else:
        fill, ink, outline = th.secondary, th.on_secondary, th.border
    if th.name == "high_contrast" and b.style in ("secondary", "ghost"):
        outline = th.text
    if not b.enabled:
        base = th.surface
        fill = mix(fill, base, 0.6) if fill else None
        ink = mix(ink, base, 0.55)
        outline = mix(outline, base, 0.5) if outline else None
    if th.bevel and b.style != "ghost":
        _rect(d, box, fill or th.surface)
        _bevel(d, box)
        if b.style == "primary":
            d.rectangle(_inclusive((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1)), outline=(0, 0, 0))
    else:
        _rect(d, box, fill, outline=outline, width=th.border_w, radius=_corner(box, th))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    _text(d, (cx, cy), display_label(b, th), b.size, ink, anchor="mm", bold=b.style == "primary", face=th.font)
    if b.style == "ghost":
        w = text_width(display_label(b, th), b.size, th.font)
        y = cy + b.size * 0.62
        d.line([(cx - w / 2, y), (cx + w / 2, y)], fill=ink, width=1)


def draw_field(d: ImageDraw.ImageDraw, f: TextField, th: Theme, caret_on: bool) -> None:
    box = f.box
    if th.bevel:
        _rect(d, box, th.input_bg)
        _bevel(d, box, sunken=True)
    else:
        colour = th.focus if f.focused else th.border
        width = th.border_w + (1 if f.focused else 0)
        _rect(d, box, th.input_bg, outline=colour, width=width, radius=_corner(box, th) // 2)
    pad = max(4, (box[3] - box[1]) // 4)
    x, cy = box[0] + pad, (box[1] + box[3]) / 2
    room = box[2] - box[0] - 2 * pad
    shown = f.value
    while shown and text_width(shown, f.size, th.font) > room:
        shown = shown[1:]  # keep the tail, where the caret is
    if shown:
        if f.select_all and f.focused:
            w = text_width(shown, f.size, th.font)
            _rect(d, (x, int(cy - f.size * 0.7), x + w, int(cy + f.size * 0.7)), th.selection)
        _text(d, (x, cy), shown, f.size, th.text, face=th.font)
    elif f.placeholder:
        _text(d, (x, cy), f.placeholder, f.size, mix(th.muted, th.input_bg, 0.25), face=th.font)
    if f.focused and caret_on:
        cx = x + text_width(shown, f.size, th.font) + 1
        d.line([(cx, cy - f.size * 0.65), (cx, cy + f.size * 0.65)], fill=th.text, width=max(1, f.size // 14))


def draw_checkbox_label(d: ImageDraw.ImageDraw, c: Checkbox, th: Theme) -> None:
    gap = max(6, c.side // 2)
    knob_w = int(c.side * 1.8) if th.switches else c.side
    _text(d, (c.box[0] + knob_w + gap, (c.box[1] + c.box[3]) / 2), c.label, c.size, th.text, face=th.font)


def draw_checkbox_box(d: ImageDraw.ImageDraw, c: Checkbox, th: Theme) -> None:
    s = c.side
    cy = (c.box[1] + c.box[3]) // 2
    x0, y0 = c.box[0], cy - s // 2
    if th.switches:
        w = int(s * 1.8)
        track = th.primary if c.checked else mix(th.border, th.surface, 0.2)
        _rect(d, (x0, y0, x0 + w, y0 + s), track, radius=s // 2)
        k = s - 4
        kx = x0 + w - k - 2 if c.checked else x0 + 2
        knob = th.on_primary if c.checked else th.surface
        d.ellipse((kx, y0 + 2, kx + k - 1, y0 + 2 + k - 1), fill=knob, outline=th.border)
        return
    box = (x0, y0, x0 + s, y0 + s)
    if th.bevel:
        _rect(d, box, th.input_bg)
        _bevel(d, box, sunken=True)
        ink = th.text
    elif c.checked:
        _rect(d, box, th.primary, outline=th.primary, width=th.border_w, radius=int(s * th.radius * 0.6))
        ink = th.on_primary
    else:
        _rect(d, box, th.input_bg, outline=mix(th.border, th.text, 0.3), width=max(1, th.border_w),
              radius=int(s * th.radius * 0.6))
        ink = th.text
    if c.checked:
        w = max(2, s // 7)
        d.line([(x0 + s * 0.22, y0 + s * 0.52), (x0 + s * 0.42, y0 + s * 0.72),
                (x0 + s * 0.78, y0 + s * 0.3)], fill=ink, width=w, joint="curve")


def draw_banner(d: ImageDraw.ImageDraw, b: Banner, th: Theme) -> None:
    if not b.visible:
        return
    bg, fg = {"error": (th.error_bg, th.error_fg), "success": (th.success_bg, th.success_fg)}.get(
        b.tone, (th.surface, th.text))
    r = _corner(b.box, th) // 2
    _rect(d, b.box, bg, outline=fg if th.name in ("high_contrast", "retro") or b.tone == "info"
          else mix(bg, fg, 0.3), width=th.border_w, radius=r)
    h = b.box[3] - b.box[1]
    cy = (b.box[1] + b.box[3]) / 2
    icon = int(h * 0.5)
    ix = b.box[0] + (h - icon) // 2
    d.ellipse((ix, cy - icon / 2, ix + icon, cy + icon / 2), fill=fg)
    _text(d, (ix + icon / 2, cy), "!" if b.tone == "error" else "i", max(8, int(icon * 0.8)), bg,
          anchor="mm", bold=True, face=th.font)
    _text(d, (ix + icon + h * 0.3, cy), b.label, b.size, fg, face=th.font)


def render_list_row(lv: ListView, i: int, th: Theme) -> Image.Image:
    w = lv.box[2] - lv.box[0]
    img = Image.new("RGB", (w, lv.row_h), th.selection if i == lv.selected else th.input_bg)
    d = ImageDraw.Draw(img)
    pad = max(8, lv.row_h // 3)
    bar = max(6, lv.row_h // 5)
    cy = lv.row_h / 2
    label, meta = lv.items[i]
    ink = (255, 255, 255) if (i == lv.selected and th.bevel) else th.text
    _text(d, (pad, cy), label, lv.size, ink, face=th.font)
    if meta:
        _text(d, (w - pad - bar, cy), meta, max(8, int(lv.size * 0.85)), th.muted, anchor="rm", face=th.font)
    d.line([(pad // 2, lv.row_h - 1), (w - pad // 2, lv.row_h - 1)], fill=th.grid)
    return img


def draw_chart_frame(d: ImageDraw.ImageDraw, c: Chart, th: Theme) -> None:
    x0, y0, x1, y1 = c.box
    _rect(d, c.box, th.input_bg if th.name != "high_contrast" else (0, 0, 0), outline=th.border,
          width=th.border_w)
    for k in range(1, 5):
        y = y0 + (y1 - y0) * k // 5
        d.line([(x0 + 1, y), (x1 - 2, y)], fill=th.grid)


def draw_chart_line(d: ImageDraw.ImageDraw, c: Chart, th: Theme) -> None:
    x0, y0, x1, y1 = c.box
    axis = text_width("00000.00", max(8, int(c.size * 0.8)), th.font) + 10
    top, bottom = y0 + c.size * 2.2, y1 - c.size
    left, right = x0 + 8, x1 - axis
    lo, hi = min(c.prices), max(c.prices)
    span = max(hi - lo, hi * 0.002)
    n = len(c.prices)
    pts = [(left + (right - left) * i / (n - 1), bottom - (p - lo) / span * (bottom - top))
           for i, p in enumerate(c.prices)]
    d.polygon(pts + [(right, bottom), (left, bottom)], fill=mix(th.input_bg, th.chart_line, 0.15))
    d.line(pts, fill=th.chart_line, width=max(1, c.size // 8), joint="curve")
    small = max(8, int(c.size * 0.8))
    for k in range(5):
        v = lo + span * k / 4
        _text(d, (x1 - 6, bottom - (bottom - top) * k / 4), f"{v:.2f}", small, th.muted, anchor="rm", face=th.font)
    last, first = c.prices[-1], c.prices[0]
    change = (last - first) / first * 100
    up = change >= 0
    tone = (30, 160, 80) if up else (210, 50, 60)
    if th.name == "high_contrast":
        tone = (120, 255, 120) if up else (255, 110, 110)
    _text(d, (x0 + 10, y0 + c.size * 1.1), f"{c.label}  {last:.2f}", c.size, th.text, bold=True, face=th.font)
    _text(d, (x0 + 16 + text_width(f"{c.label}  {last:.2f}", c.size, th.font) + c.size, y0 + c.size * 1.1),
          f"{'+' if up else ''}{change:.2f}%", c.size, tone, face=th.font)
    d.ellipse((pts[-1][0] - 3, pts[-1][1] - 3, pts[-1][0] + 3, pts[-1][1] + 3), fill=th.chart_line)


def draw_dialog(d: ImageDraw.ImageDraw, g: Dialog, th: Theme) -> None:
    r = 0 if th.bevel else int(round(12 * th.radius * 2)) + 2
    if th.shadow or th.name == "dark":
        off = max(3, (g.box[3] - g.box[1]) // 50)
        _rect(d, (g.box[0] + off, g.box[1] + off * 2, g.box[2] + off, g.box[3] + off * 2),
              mix(th.overlay, th.bg, 0.2), radius=r)
    _rect(d, g.box, th.surface, outline=th.border if not th.bevel else None,
          width=th.border_w, radius=r)
    if th.bevel:
        _bevel(d, g.box)
    for c in g.children:
        draw_static(d, c, th)


def draw_static(d: ImageDraw.ImageDraw, w: Widget, th: Theme) -> None:
    """The part of a widget that never changes during a task."""
    if isinstance(w, Panel):
        draw_panel(d, w, th)
    elif isinstance(w, Text):
        draw_text(d, w, th)
    elif isinstance(w, Button):
        draw_button(d, w, th)
    elif isinstance(w, Checkbox):
        draw_checkbox_label(d, w, th)
    elif isinstance(w, Chart):
        draw_chart_frame(d, w, th)
    elif isinstance(w, ListView):
        _rect(d, (w.box[0] - 1, w.box[1] - 1, w.box[2] + 1, w.box[3] + 1), None, outline=th.border,
              width=th.border_w)


class Renderer:
    """Draws tasks at one size, keeping the layers that survive between frames."""

    def __init__(self, width: int, height: int):
        self.size = (width, height)
        self._task: Task | None = None
        self._static: Image.Image | None = None
        self._overlay: Image.Image | None = None
        self._dialog: tuple[Dialog, Image.Image, tuple[int, int]] | None = None
        self._rows: dict[tuple[int, bool], Image.Image] = {}  # list row tiles of the current task

    def render(self, task: Task, caret_on: bool) -> np.ndarray:
        th = task.theme
        if self._task is not task:
            self._task = task
            self._static = self._draw_static(task)
            self._overlay = Image.new("RGB", self.size, th.overlay)
            self._dialog = None
            self._rows = {}
        assert self._static is not None and self._overlay is not None
        img = self._static.copy()
        d = ImageDraw.Draw(img)
        for w in task.widgets:
            if w.live:
                self._draw_live(img, d, w, th, caret_on)
        if task.toast is not None:
            draw_banner(d, task.toast, th)
        g = task.dialog
        if g is not None and g.visible:
            img = Image.blend(img, self._overlay, th.overlay_alpha)
            tile, at = self._dialog_layer(g, th)
            img.paste(tile, at, tile)
        arr = np.asarray(img)
        arr.flags.writeable = False  # frames are shared and cached: nobody may draw on them
        return arr

    def _draw_static(self, task: Task) -> Image.Image:
        img = Image.new("RGB", self.size, task.theme.bg)
        d = ImageDraw.Draw(img)
        for w in task.widgets:
            draw_static(d, w, task.theme)
        return img

    def _draw_live(self, img: Image.Image, d: ImageDraw.ImageDraw, w: Widget, th: Theme,
                   caret_on: bool) -> None:
        if isinstance(w, TextField):
            draw_field(d, w, th, caret_on)
        elif isinstance(w, Checkbox):
            draw_checkbox_box(d, w, th)
        elif isinstance(w, Banner):
            draw_banner(d, w, th)
        elif isinstance(w, Chart):
            draw_chart_line(d, w, th)
        elif isinstance(w, ListView):
            self._draw_list(img, d, w, th)
        elif isinstance(w, Text):
            draw_text(d, w, th)

    def _draw_list(self, img: Image.Image, d: ImageDraw.ImageDraw, lv: ListView, th: Theme) -> None:
        # Rows are drawn once, when first scrolled into view, and re-drawn only on (de)selection.
        x0, y0, x1, y1 = lv.box
        d.rectangle(_inclusive(lv.box), fill=th.input_bg)
        first = lv.offset // lv.row_h
        last = min(len(lv.items), (lv.offset + y1 - y0 + lv.row_h - 1) // lv.row_h)
        for i in range(first, last):
            key = (i, i == lv.selected)
            tile = self._rows.get(key)
            if tile is None:
                tile = self._rows[key] = render_list_row(lv, i, th)
            top = y0 + i * lv.row_h - lv.offset
            cut = (0, max(0, y0 - top), x1 - x0, min(lv.row_h, y1 - top))
            img.paste(tile.crop(cut) if cut != (0, 0, x1 - x0, lv.row_h) else tile, (x0, top + cut[1]))
        total = len(lv.items) * lv.row_h
        vh = y1 - y0
        if total > vh:
            bar = max(6, lv.row_h // 5)
            thumb_h = max(bar * 2, vh * vh // total)
            ty = y0 + (vh - thumb_h) * lv.offset // max(1, lv.max_offset)
            _rect(d, (x1 - 2 - bar, y0, x1 - 2, y1), mix(th.input_bg, th.border, 0.35))
            _rect(d, (x1 - 2 - bar, ty, x1 - 2, ty + thumb_h), th.border if th.name != "high_contrast"
                  else th.primary, radius=0 if th.bevel else bar // 2)

    def _dialog_layer(self, g: Dialog, th: Theme) -> tuple[Image.Image, tuple[int, int]]:
        if self._dialog is None or self._dialog[0] is not g:
            # Drawn once on a transparent tile (corners and shadow stay see-through), then
            # pasted each frame over whatever live content lies beneath.
            x0, y0, x1, y1 = g.box
            margin = max(4, (y1 - y0) // 20)
            tile = Image.new("RGBA", (x1 - x0 + 2 * margin, y1 - y0 + 3 * margin), (0, 0, 0, 0))
            draw_dialog(ImageDraw.Draw(tile), _shift_dialog(g, margin - x0, margin - y0), th)
            self._dialog = (g, tile, (x0 - margin, y0 - margin))
        return self._dialog[1], self._dialog[2]


def _shift_dialog(g: Dialog, dx: int, dy: int) -> Dialog:
    def sh(b: Box) -> Box:
        return (b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy)

    kids: list[Widget] = []
    for c in g.children:
        if isinstance(c, Button):
            kids.append(Button(box=sh(c.box), label=c.label, enabled=c.enabled, style=c.style, size=c.size))
        elif isinstance(c, Text):
            kids.append(Text(box=sh(c.box), label=c.label, role=c.role, size=c.size, bold=c.bold))
    return Dialog(box=sh(g.box), label=g.label, children=kids)

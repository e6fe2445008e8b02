"""Layout: places widgets on a page (header, optional sidebar, a card of stacked rows).

Sizes scale with a unit ``u`` derived from the resolution, so a phone portrait,
a laptop and a 4K screen all get sensible proportions; a task whose content does
not fit retries with a smaller ``u``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from edge_vla.sim import wording
from edge_vla.sim.render import Theme, display_label, text_width
from edge_vla.sim.scene import Banner, Box, Button, Checkbox, Dialog, ListView, Panel, Text, TextField, Widget


class Overflow(Exception):
    """The content does not fit the screen at this scale."""


@dataclass
class Ctx:
    rng: random.Random
    width: int
    height: int
    theme: Theme
    t0: float  # sim time the task starts at: timers are relative to it
    strict: bool = True  # False: lay out anyway when content overflows (absurdly small screens)

    @property
    def portrait(self) -> bool:
        return self.width < self.height or self.width < 640


def base_unit(ctx: Ctx) -> float:
    """Pixels per layout unit: phones are laid out like 400 px wide screens at higher DPR."""
    u = ctx.width / 400 if ctx.width < ctx.height else min(ctx.width, ctx.height) / 720
    return max(0.6, u) * ctx.rng.uniform(0.88, 1.18)


class Page:
    """A page with chrome; ``card`` rows are stacked top to bottom from ``y``."""

    def __init__(self, ctx: Ctx, u: float, card_width: tuple[int, int] = (420, 640)):
        self.ctx, self.u = ctx, u
        rng, th = ctx.rng, ctx.theme
        W, H = ctx.width, ctx.height
        self.fs = max(10, round(16 * u * th.font_scale))
        self.inline_labels = not ctx.portrait and rng.random() < 0.3
        self.widgets: list[Widget] = []
        hh = max(self.s(rng.choice([44, 52, 60])), int(self.fs * 1.15 * 1.6))
        self.widgets.append(Panel(box=(0, 0, W, hh), style="header"))
        self.add_text(rng.choice(wording.APP_NAMES), self.s(18), hh / 2, "logo", int(self.fs * 1.15), bold=True)
        if not ctx.portrait:
            x = W - self.s(20)
            for nav in rng.sample(wording.NAV, rng.randint(2, 4)):
                w = text_width(nav, self.fs, th.font)
                x -= w
                self.add_text(nav, x, hh / 2, "nav", self.fs)
                x -= self.s(22)
        left = 0
        if not ctx.portrait and W >= 900 and rng.random() < 0.45:
            left = self.s(rng.choice([170, 190, 210]))
            self.widgets.append(Panel(box=(0, hh, left, H), style="sidebar"))
            y = hh + self.s(24)
            for nav in rng.sample(wording.NAV, rng.randint(3, 6)):
                self.add_text(nav, self.s(20), y, "side", self.fs)
                y += self.s(34)
        margin = self.s(12) if ctx.portrait else self.s(rng.choice([20, 28, 40, 56]))
        self.area: Box = (left + margin, hh + margin, W - margin, H - margin)
        self._card_width = card_width

    def s(self, v: float) -> int:
        return int(round(v * self.u))

    def add_text(self, text: str, x: float, cy: float, role: str, size: int, bold: bool = False) -> Text:
        h = int(size * 1.3)
        w = text_width(text, size, self.ctx.theme.font)
        t = Text(box=(int(x), int(cy - h / 2), int(x) + w, int(cy - h / 2) + h),
                 label=text, role=role, size=size, bold=bold)
        self.widgets.append(t)
        return t

    # --- the card -------------------------------------------------------------------------

    def open_card(self, full: bool = False) -> None:
        """Start the card in ``area``; ``full`` makes it span the area's width."""
        rng = self.ctx.rng
        ax0, ay0, ax1, _ = self.area
        aw = ax1 - ax0
        full = full or self.ctx.portrait
        cw = aw if full else min(aw, self.s(rng.randint(*self._card_width)))
        x = ax0 if full or rng.random() < 0.4 else ax0 + (aw - cw) // 2
        self.boxed = rng.random() < 0.8
        pad = self.s(rng.choice([16, 20, 26])) if self.boxed else 0
        self.card_top = ay0 + (0 if self.ctx.portrait else self.s(rng.choice([0, 8, 24])))
        self.card_x = (x, x + cw)
        self.pad = pad
        self.x0, self.x1 = x + pad, x + cw - pad
        self.y = self.card_top + pad
        self.gap = self.s(rng.choice([10, 12, 14, 18]))
        self._card_at = len(self.widgets)

    def close_card(self) -> None:
        bottom = self.y - self.gap + self.pad
        if bottom > self.area[3] + self.s(4) and self.ctx.strict:
            raise Overflow
        if self.boxed:
            self.widgets.insert(self._card_at, Panel(box=(self.card_x[0], self.card_top, self.card_x[1], bottom)))

    @property
    def inner_width(self) -> int:
        return self.x1 - self.x0

    def details(self, pairs: list[tuple[str, str]]) -> None:
        """Key/value lines, as on a record's detail page: filler that a model must read past."""
        size = max(9, int(self.fs * 0.95))
        kw = max(text_width(k, size, self.ctx.theme.font) for k, _ in pairs) + self.s(16)
        for k, v in pairs:
            cy = self.y + size * 0.7
            self.add_text(k, self.x0, cy, "muted", size)
            self.add_text(v, self.x0 + kw, cy, "body", size)
            self.y += int(size * 1.5)
        self.y += self.gap

    def heading(self, text: str) -> Text:
        size = int(self.fs * self.ctx.rng.choice([1.3, 1.5, 1.7]))
        t = self.add_text(text, self.x0, self.y + size * 0.65, "title", size, bold=True)
        self.y += int(size * 1.3) + self.gap
        return t

    def paragraph(self, text: str, role: str = "muted") -> None:
        size = max(9, int(self.fs * 0.92))
        line = ""
        for word in text.split():
            trial = f"{line} {word}".strip()
            if line and text_width(trial, size, self.ctx.theme.font) > self.inner_width:
                self._line(line, role, size)
                line = word
            else:
                line = trial
        if line:
            self._line(line, role, size)
        self.y += self.gap

    def _line(self, text: str, role: str, size: int) -> None:
        self.add_text(text, self.x0, self.y + size * 0.65, role, size)
        self.y += int(size * 1.35)

    def field(self, label: str, value: str = "", placeholder: str = "") -> TextField:
        rng = self.ctx.rng
        h = max(self.fs + 10, self.s(rng.choice([34, 38, 42])))
        inline = self.inline_labels and self.inner_width > self.s(400)
        lsize = max(9, int(self.fs * 0.92))
        if inline:
            lw = self.s(130)
            self.add_text(label, self.x0, self.y + h / 2, "label", lsize)
            box = (self.x0 + lw, self.y, self.x1, self.y + h)
        else:
            self.add_text(label, self.x0, self.y + lsize * 0.65, "label", lsize)
            self.y += int(lsize * 1.3) + self.s(4)
            width = self.inner_width if rng.random() < 0.6 else int(self.inner_width * rng.uniform(0.6, 0.9))
            box = (self.x0, self.y, self.x0 + max(width, self.s(120)), self.y + h)
        f = TextField(box=box, label=label, value=value, placeholder=placeholder, size=self.fs)
        self.widgets.append(f)
        self.y = box[3] + self.gap
        return f

    def checkbox(self, label: str, checked: bool) -> Checkbox:
        side = max(12, int(self.fs * 1.15))
        row = max(side + self.s(8), int(self.fs * 1.9))
        th = self.ctx.theme
        knob = int(side * 1.8) if th.switches else side
        w = knob + max(6, side // 2) + text_width(label, self.fs, th.font)
        c = Checkbox(box=(self.x0, self.y, self.x0 + w, self.y + row), label=label, checked=checked,
                     size=self.fs, side=side)
        self.widgets.append(c)
        self.y += row + self.s(2)
        return c

    def buttons(self, specs: list[tuple[str, str, bool]], align: str | None = None,
                stacked: bool = False) -> list[Button]:
        """A row of (label, style, enabled) buttons that wraps onto new lines when full."""
        rng, th = self.ctx.rng, self.ctx.theme
        align = align or rng.choice(["left", "right", "left", "center"])
        h = max(self.fs + 12, self.s(rng.choice([34, 38, 44])))
        padx = self.s(rng.choice([14, 18, 24]))
        gap = self.s(rng.choice([8, 10, 14]))
        made = [Button(box=(0, 0, 0, 0), label=label, style=style, enabled=enabled, size=self.fs)
                for label, style, enabled in specs]
        widths = [min(self.inner_width, text_width(display_label(b, th), self.fs, th.font) + 2 * padx) for b in made]
        if stacked:
            widths = [self.inner_width] * len(made)
        rows: list[list[int]] = [[]]
        used = 0
        for i, w in enumerate(widths):
            if rows[-1] and used + gap + w > self.inner_width:
                rows.append([])
                used = 0
            used += (gap if rows[-1] else 0) + w
            rows[-1].append(i)
        for row in rows:
            total = sum(widths[i] for i in row) + gap * (len(row) - 1)
            x = {"left": self.x0, "right": self.x1 - total, "center": self.x0 + (self.inner_width - total) // 2}[align]
            for i in row:
                made[i].box = (x, self.y, x + widths[i], self.y + h)
                x += widths[i] + gap
            self.y += h + gap
        self.widgets.extend(made)
        return made

    def banner(self, text: str, tone: str, visible: bool = True, until: float | None = None) -> Banner:
        h = max(self.fs + 14, int(self.fs * 2.6))
        b = Banner(box=(self.x0, self.y, self.x1, self.y + h), label=text, tone=tone, visible=visible,
                   until=until, size=max(9, int(self.fs * 0.95)))
        self.widgets.append(b)
        self.y += h + self.gap
        return b

    def list_view(self, label: str, items: list[tuple[str, str]], reserve: int = 0) -> ListView:
        row_h = max(self.fs + 12, self.s(self.ctx.rng.choice([34, 40, 46])))
        avail = self.area[3] - self.pad - reserve - self.y
        rows = min(len(items) - 3, avail // row_h)
        if rows < 3:
            if self.ctx.strict:
                raise Overflow
            rows = max(1, rows)
        box = (self.x0 + 1, self.y + 1, self.x1 - 1, self.y + 1 + rows * row_h - row_h // 3)
        lv = ListView(box=box, label=label, items=items, row_h=row_h, size=self.fs)
        self.widgets.append(lv)
        self.y = box[3] + 1 + self.gap
        return lv


def make_dialog(ctx: Ctx, u: float, title: str, body: str, dismiss: str | None, primary: str | None,
                centre: tuple[float, float], visible: bool, appear_at: float | None = None) -> Dialog:
    """A modal centred on ``centre`` (clamped to the screen) with a close cross."""
    rng = ctx.rng
    W, H = ctx.width, ctx.height
    fs = max(10, round(16 * u * ctx.theme.font_scale))
    w = min(W - int(24 * u), int(rng.randint(340, 460) * u))
    pad = int(rng.choice([18, 22, 26]) * u)
    kids: list[Widget] = []
    tsize = int(fs * 1.3)
    close_side = max(fs + 8, int(30 * u))
    y = pad
    lines: list[str] = []
    line = ""
    for word in body.split():
        trial = f"{line} {word}".strip()
        if line and text_width(trial, fs, ctx.theme.font) > w - 2 * pad:
            lines.append(line)
            line = word
        else:
            line = trial
    lines.append(line)
    heights = int(tsize * 1.4) + int(fs * 0.6) + len(lines) * int(fs * 1.45) + int(fs * 1.2)
    bh = max(fs + 12, int(36 * u))
    has_buttons = bool(dismiss or primary)
    h = pad * 2 + heights + (bh if has_buttons else 0)
    x0 = int(min(max(centre[0] - w / 2, 4), W - w - 4))
    y0 = int(min(max(centre[1] - h / 2, 4), H - h - 4))

    def text(label: str, x: int, top: int, size: int, bold: bool = False, role: str = "body") -> None:
        kids.append(Text(box=(x, top, x + text_width(label, size, ctx.theme.font), top + int(size * 1.3)),
                         label=label, size=size, bold=bold, role=role))

    text(title, x0 + pad, y0 + y, tsize, bold=True)
    y += int(tsize * 1.4) + int(fs * 0.6)
    for ln in lines:
        text(ln, x0 + pad, y0 + y, fs, role="muted")
        y += int(fs * 1.45)
    y += int(fs * 1.2)
    close = Button(box=(x0 + w - close_side - pad // 3, y0 + pad // 3,
                        x0 + w - pad // 3, y0 + pad // 3 + close_side), label="Close", style="close", size=fs)
    kids.append(close)
    dismissers = [close]
    bx = x0 + w - pad
    for label, style in ((dismiss, "secondary"), (primary, "primary")):
        if not label:
            continue
        shown = display_label(Button(box=(0, 0, 0, 0), label=label), ctx.theme)
        bw = text_width(shown, fs, ctx.theme.font) + int(32 * u)
        b = Button(box=(bx - bw, y0 + y, bx, y0 + y + bh), label=label, style=style, size=fs)
        kids.append(b)
        if style == "secondary":
            dismissers.append(b)
        bx -= bw + int(10 * u)
    return Dialog(box=(x0, y0, x0 + w, y0 + h), label=title, children=kids, close=close,
                  dismissers=dismissers, visible=visible, appear_at=appear_at)


def make_toast(ctx: Ctx, u: float, text: str, tone: str, until: float | None) -> Banner:
    fs = max(10, round(14 * u * ctx.theme.font_scale))
    h = int(fs * 2.8)
    w = min(ctx.width - int(16 * u), text_width(text, fs, ctx.theme.font) + int(fs * 2.8) + int(24 * u))
    x0 = (ctx.width - w) // 2
    y1 = ctx.height - int(20 * u)
    return Banner(box=(x0, y1 - h, x0 + w, y1), label=text, tone=tone, until=until, size=fs)

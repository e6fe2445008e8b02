"""Task kinds: each builds a screen, says its instruction, judges success, and knows the oracle.

A task owns its widgets and reacts to what the world routes to it (button
presses, list selections); the world owns the generic UI mechanics (hit testing,
focus, typing, scrolling, the modal). ``oracle`` is the privileged teacher: it
reads the true state and names the next right step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import ClassVar

from edge_vla.sim import wording
from edge_vla.sim.layout import Ctx, Overflow, Page, base_unit, make_dialog, make_toast
from edge_vla.sim.scene import Banner, Button, Chart, Dialog, Element, ListView, Widget

TOAST_SECONDS = 1.5


@dataclass(frozen=True)
class Step:
    """The oracle's next step: an action type, what it points at, and extra action fields."""

    type: str
    target: Element | None = None
    fields: dict = field(default_factory=dict)


def element_of(w: Widget) -> Element:
    return Element(w.kind, w.label, w.box, w.enabled)


class Task:
    kind: ClassVar[str] = ""

    def __init__(self, ctx: Ctx):
        self.ctx = ctx
        self.theme = ctx.theme
        self.instruction = ""
        self.toast: Banner | None = None
        self._succeeded = False
        u = base_unit(ctx)
        for attempt in range(8):
            # Shrink until it fits; the last try keeps what overflows (cut off at the edge).
            ctx.strict = attempt < 7
            self.widgets: list[Widget] = []
            self.dialog: Dialog | None = None
            try:
                self.build(u)
                break
            except Overflow:
                u *= 0.85
        self.u = u
        self._timed = [w for w in self.widgets if isinstance(w, (Banner, Chart))]

    # --- subclass hooks ---------------------------------------------------------------------

    def build(self, u: float) -> None:
        raise NotImplementedError

    def oracle(self) -> Step:
        raise NotImplementedError

    @property
    def success(self) -> bool:
        return self._succeeded

    def press(self, b: Button, t: float) -> str:
        """A page button was clicked (or Enter pressed in a field whose form it submits)."""
        self.show_toast(f"{b.label}: done", "info", t)
        return f"pressed {b.label}"

    def select(self, lv: ListView, i: int, t: float) -> str:
        lv.selected = i
        return f"selected {lv.items[i][0]}"

    # --- shared mechanics ---------------------------------------------------------------------

    def update(self, t: float) -> bool:
        changed = False
        for w in self._timed:
            changed |= w.update(t)
        if self.dialog is not None:
            changed |= self.dialog.update(t)
        if self.toast is not None and self.toast.update(t):
            self.toast = None
            changed = True
        return changed

    def show_toast(self, text: str, tone: str, t: float, seconds: float | None = TOAST_SECONDS) -> None:
        self.toast = make_toast(self.ctx, self.u, text, tone, None if seconds is None else t + seconds)

    def succeed(self, text: str) -> None:
        self._succeeded = True
        self.toast = make_toast(self.ctx, self.u, text, "success", None)

    def maybe_popup(self, u: float, chance: float = 0.25) -> None:
        """An interruption that pops up on a timer, as real sites do; the instruction never says."""
        rng = self.ctx.rng
        if rng.random() >= chance:
            return
        title, body = rng.choice(wording.POPUP_TITLES)
        self.dialog = make_dialog(
            self.ctx, u, title, body, rng.choice(wording.POPUP_DISMISS),
            rng.choice(wording.POPUP_PRIMARY) if rng.random() < 0.5 else None,
            centre=(self.ctx.width / 2, self.ctx.height / 2), visible=False,
            appear_at=self.ctx.t0 + rng.uniform(0.3, 2.5))


def _page_with_title(ctx: Ctx, u: float, titles: tuple[str, ...],
                     card_width: tuple[int, int] = (420, 640), form: bool = False) -> Page:
    p = Page(ctx, u, card_width)
    p.open_card()
    p.heading(ctx.rng.choice(titles))
    if ctx.rng.random() < 0.6:
        p.paragraph(ctx.rng.choice(wording.PARAGRAPHS + (wording.FORM_PARAGRAPHS if form else ())))
    return p


class ClickButton(Task):
    kind = "click_button"

    def build(self, u: float) -> None:
        rng = self.ctx.rng
        p = _page_with_title(self.ctx, u, wording.TITLES[self.kind], (460, 760))
        group = rng.choice(wording.BUTTON_GROUPS)
        label = rng.choice(group)
        siblings = [g for g in group if g != label]
        labels = [label] + rng.sample(siblings, rng.randint(1, len(siblings)))
        pool = [x for grp in wording.BUTTON_GROUPS if grp is not group for x in grp] + list(wording.OTHER_BUTTONS)
        labels += [x for x in rng.sample(pool, rng.randint(1, 4)) if x not in labels]
        rng.shuffle(labels)
        disabled = rng.choice([x for x in labels if x != label]) if rng.random() < 0.3 else None
        specs = []
        for x in labels:
            style = rng.choice(["secondary", "secondary", "primary", "ghost"])
            if x.startswith("Delete") and rng.random() < 0.6:
                style = "danger"
            specs.append((x, style, x != disabled))
        # Real pages scatter actions: a toolbar above the content, the main actions below it.
        cut = rng.randint(0, len(specs) // 2) if rng.random() < 0.5 else 0
        buttons = p.buttons(specs[:cut], align="left") if cut else []
        if rng.random() < 0.7:
            p.details([(k, rng.choice(v)) for k, v in rng.sample(wording.DETAIL_KEYS, rng.randint(2, 5))])
        buttons += p.buttons(specs[cut:], stacked=self.ctx.portrait and rng.random() < 0.5)
        p.close_card()
        self.widgets = p.widgets
        self.target = next(b for b in buttons if b.label == label)
        self.instruction = rng.choice(wording.CLICK_TEMPLATES).format(x=label)
        self.maybe_popup(u)

    def press(self, b: Button, t: float) -> str:
        if b is self.target:
            self.succeed(f"{b.label}: done")
            return f"pressed {b.label}"
        return super().press(b, t)

    def oracle(self) -> Step:
        return Step("click", element_of(self.target))


class FillAndSubmit(Task):
    kind = "fill_and_submit"

    def build(self, u: float) -> None:
        rng = self.ctx.rng
        p = _page_with_title(self.ctx, u, wording.TITLES[self.kind], form=True)
        chosen = rng.sample(wording.FIELDS, rng.randint(2, 4))
        ti = rng.randrange(len(chosen))
        self.value = rng.choice(chosen[ti][2])
        fields = []
        for i, (label, placeholder, values) in enumerate(chosen):
            value = ""
            if i == ti and rng.random() < 0.2:
                value = rng.choice([v for v in values if v != self.value])  # must be replaced
            elif i != ti and rng.random() < 0.4:
                value = rng.choice(values)
            fields.append(p.field(label, value, placeholder if rng.random() < 0.7 else ""))
        self.submit_word = rng.choice(wording.SUBMIT_WORDS)
        specs = [(self.submit_word, "primary", True)]
        if rng.random() < 0.5:
            specs.append((rng.choice(["Cancel", "Reset", "Back", "Clear"]), "secondary", True))
            if rng.random() < 0.5:
                specs.reverse()
        p.y += p.s(4)
        buttons = p.buttons(specs, stacked=self.ctx.portrait and rng.random() < 0.4)
        p.close_card()
        self.widgets = p.widgets
        self.submit = next(b for b in buttons if b.label == self.submit_word)
        for f in fields:
            f.submit = self.submit
        self.field = fields[ti]
        self.instruction = rng.choice(wording.FILL_TEMPLATES).format(
            v=self.value, f=self.field.label, s=self.submit_word)
        self.maybe_popup(u)

    def press(self, b: Button, t: float) -> str:
        if b is not self.submit:
            return super().press(b, t)
        if self.field.value == self.value:
            self.succeed(f"{self.submit_word}: form submitted")
            return "form submitted"
        self.show_toast(f"Please check the {self.field.label} field", "error", t, 2.0)
        return f"submitted with {self.field.label}={self.field.value!r}"

    def oracle(self) -> Step:
        f = self.field
        if f.value == self.value:
            return Step("click", element_of(self.submit))
        if not f.focused:
            return Step("click", element_of(f))
        if f.select_all or not f.value:
            return Step("type", element_of(f), {"text": self.value})
        if self.value.startswith(f.value):
            return Step("type", element_of(f), {"text": self.value[len(f.value):]})
        return Step("key", element_of(f), {"key": "ctrl+a"})


class WaitThenSubmit(Task):
    kind = "wait_then_submit"

    def build(self, u: float) -> None:
        rng = self.ctx.rng
        p = _page_with_title(self.ctx, u, wording.TITLES[self.kind])
        duration = rng.uniform(0.5, 3.0)
        error_first = rng.random() < 0.5
        text = rng.choice(wording.ERROR_TEXTS)
        if error_first:
            self.error = p.banner(text, "error", until=self.ctx.t0 + duration)
        for label, placeholder, values in rng.sample(wording.FIELDS, rng.randint(1, 3)):
            p.field(label, rng.choice(values), placeholder)
        if not error_first:
            self.error = p.banner(text, "error", until=self.ctx.t0 + duration)
        self.submit_word = rng.choice(wording.SUBMIT_WORDS)
        specs = [(self.submit_word, "primary", True)]
        if rng.random() < 0.5:
            specs.insert(0, (rng.choice(["Back", "Cancel", "Edit"]), "secondary", True))
        buttons = p.buttons(specs)
        p.close_card()
        self.widgets = p.widgets
        self.submit = next(b for b in buttons if b.label == self.submit_word)
        self.instruction = rng.choice(wording.WAIT_TEMPLATES).format(s=self.submit_word)

    def press(self, b: Button, t: float) -> str:
        if b is not self.submit:
            return super().press(b, t)
        if self.error.visible:
            self.show_toast("Still validating, please wait", "info", t)
            return "submitted while the validation error was still shown"
        self.succeed(f"{self.submit_word}: done")
        return "submitted"

    def oracle(self) -> Step:
        if self.error.visible:
            return Step("wait")
        return Step("click", element_of(self.submit))


class DismissPopupThenBuy(Task):
    kind = "dismiss_popup_then_buy"

    def build(self, u: float) -> None:
        rng, ctx = self.ctx.rng, self.ctx
        p = Page(ctx, u)
        ax0, ay0, ax1, ay1 = p.area
        self.ticker = ticker = rng.choice(wording.TICKERS)
        price = round(rng.uniform(8, 900), 2)
        fs = p.fs
        if ctx.portrait:
            chart_box = (ax0, ay0, ax1, ay0 + int((ay1 - ay0) * rng.uniform(0.38, 0.5)))
            side = (ax0, chart_box[3] + p.s(12), ax1, ay1)
        else:
            split = int((ax1 - ax0) * rng.uniform(0.6, 0.72))
            chart_on_left = rng.random() < 0.75
            if chart_on_left:
                chart_box = (ax0, ay0, ax0 + split, ay1)
                side = (chart_box[2] + p.s(20), ay0, ax1, ay1)
            else:
                side = (ax0, ay0, ax1 - split - p.s(20), ay1)
                chart_box = (ax1 - split, ay0, ax1, ay1)
        crng = random.Random(rng.getrandbits(64))
        vol = rng.uniform(0.002, 0.008)
        prices = [price]
        for _ in range(rng.randint(60, 160) - 1):
            prices.append(round(prices[-1] * (1 + crng.gauss(0.0, vol)), 2))
        chart = Chart(box=chart_box, label=ticker, prices=prices, interval=rng.uniform(0.25, 0.8),
                      next_tick=ctx.t0, vol=vol, size=fs, rng=crng)
        p.widgets.append(chart)
        p.area = side
        p.open_card(full=True)
        p.heading(ticker)
        facts = [("Volume", f"{rng.randint(10, 900)}K"),
                 ("Day range", f"{price * 0.97:.2f} - {price * 1.03:.2f}"),
                 ("Market", rng.choice(["Open", "Pre-market", "Open"])),
                 ("Quantity", str(rng.choice([1, 5, 10, 100]))),
                 ("Balance", f"${rng.randint(100, 99999):,}")]
        for k, v in rng.sample(facts, rng.randint(2, 4)):
            p.paragraph(f"{k}: {v}", role="muted" if rng.random() < 0.5 else "body")
        self.buy_word = rng.choice(wording.BUY_WORDS)
        sell = wording.SELL_WORDS[self.buy_word]
        specs = [(self.buy_word, "primary", True), (sell, rng.choice(["danger", "secondary"]), True)]
        if rng.random() < 0.3:
            specs.reverse()
        buttons = p.buttons(specs, stacked=rng.random() < 0.5)
        p.close_card()
        self.widgets = p.widgets
        self.buy = next(b for b in buttons if b.label == self.buy_word)
        title, body = rng.choice(wording.POPUP_TITLES)
        bx = (self.buy.box[0] + self.buy.box[2]) / 2 + rng.uniform(-0.2, 0.2) * (self.buy.box[2] - self.buy.box[0])
        by = (self.buy.box[1] + self.buy.box[3]) / 2
        self.dialog = make_dialog(ctx, u, title, body,
                                  rng.choice(wording.POPUP_DISMISS) if rng.random() < 0.7 else None,
                                  rng.choice(wording.POPUP_PRIMARY) if rng.random() < 0.5 else None,
                                  centre=(bx, by), visible=True)
        self.instruction = rng.choice(wording.BUY_TEMPLATES).format(b=self.buy_word, t=ticker)

    def press(self, b: Button, t: float) -> str:
        if b is self.buy:
            self.succeed(f"Order placed: {b.label} {self.ticker}")
            return f"pressed {b.label}"
        return super().press(b, t)

    def oracle(self) -> Step:
        return Step("click", element_of(self.buy))


def _list_items(rng: random.Random, kind: str, n: int) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    base = rng.randint(1000, 8000)
    while len(seen) < n:
        if kind == "Invoices":
            label, meta = f"Invoice #{base + rng.randint(0, 400)}", f"${rng.randint(20, 9000):,}.00"
        elif kind == "Files":
            label = f"{rng.choice(wording.FILE_WORDS)}_{rng.randint(1, 60)}.{rng.choice(wording.FILE_EXT)}"
            meta = f"{rng.uniform(0.1, 40):.1f} MB"
        elif kind == "Contacts":
            label = f"{rng.choice(wording.FIRST)} {rng.choice(wording.LAST)}"
            meta = rng.choice(["Berlin", "Paris", "Austin", "Seoul", "Lagos", "Lima", "Oslo"])
        elif kind == "Products":
            label, meta = f"{rng.choice(wording.ADJ)} {rng.choice(wording.NOUN)}", f"${rng.randint(5, 500)}.99"
        elif kind == "Orders":
            label = f"Order {base + rng.randint(0, 400)}"
            meta = rng.choice(["Shipped", "Pending", "Delivered", "Cancelled", "Processing"])
        else:
            topic = rng.choice(["Login issue", "Refund", "Bug report", "Question", "Outage"])
            label = f"#{base + rng.randint(0, 400)} {topic}"
            meta = rng.choice(["Low", "Normal", "High", "Urgent"])
        if label not in seen:
            seen[label] = f"{rng.choice(wording.MONTHS)} {rng.randint(1, 28)}" if rng.random() < 0.2 else meta
    return list(seen.items())


class ScrollToItem(Task):
    kind = "scroll_to_item"

    def build(self, u: float) -> None:
        rng = self.ctx.rng
        kind = rng.choice(wording.LIST_KINDS)
        p = _page_with_title(self.ctx, u, wording.LIST_TITLES[kind], (460, 720))
        if rng.random() < 0.4:
            p.buttons([(x, "secondary", True) for x in rng.sample(["New", "Refresh", "Filter", "Sort", "Export"], 2)],
                      align="left")
        items = _list_items(rng, kind, rng.randint(20, 45))
        self.list = p.list_view(kind, items)
        p.close_card()
        self.widgets = p.widgets
        lv = self.list
        shown = (lv.box[3] - lv.box[1]) // lv.row_h
        self.index = rng.randint(min(shown + 1, len(items) - 1), len(items) - 1)
        self.instruction = rng.choice(wording.SCROLL_TEMPLATES).format(x=items[self.index][0])
        self.maybe_popup(u)

    def select(self, lv: ListView, i: int, t: float) -> str:
        detail = super().select(lv, i, t)
        if lv is self.list and i == self.index:
            self.succeed(f"Opened {lv.items[i][0]}")
        return detail

    def oracle(self) -> Step:
        lv, i = self.list, self.index
        if lv.fully_visible(i):
            return Step("click", Element("list_item", lv.items[i][0], lv.visible_box(i) or lv.box, True))
        vh = lv.box[3] - lv.box[1]
        want = min(max(0, i * lv.row_h - (vh - lv.row_h) // 2), lv.max_offset)
        delta = max(-int(vh * 0.9), min(int(vh * 0.9), want - lv.offset))
        dy = round(delta * 1000 / self.ctx.height) or (1 if delta > 0 else -1)
        return Step("scroll", element_of(lv), {"dx": 0, "dy": max(-1000, min(1000, dy))})


class CheckboxTask(Task):
    kind = "checkbox"

    def build(self, u: float) -> None:
        rng = self.ctx.rng
        p = _page_with_title(self.ctx, u, wording.TITLES[self.kind])
        labels = rng.sample(wording.CHECK_LABELS, rng.randint(3, 7))
        ti = rng.randrange(len(labels))
        self.want = rng.random() < 0.7
        boxes = [p.checkbox(x, (not self.want) if i == ti else rng.random() < 0.4) for i, x in enumerate(labels)]
        if rng.random() < 0.6:
            p.y += p.gap
            p.buttons([("Save", "primary", True)] + ([("Cancel", "secondary", True)] if rng.random() < 0.5 else []))
        p.close_card()
        self.widgets = p.widgets
        self.box = boxes[ti]
        templates = wording.TICK_TEMPLATES if self.want else wording.UNTICK_TEMPLATES
        self.instruction = rng.choice(templates).format(x=self.box.label)
        self.maybe_popup(u)

    @property
    def success(self) -> bool:
        return self.box.checked == self.want

    def oracle(self) -> Step:
        return Step("click", element_of(self.box))


TASKS: dict[str, type[Task]] = {
    t.kind: t for t in (ClickButton, FillAndSubmit, WaitThenSubmit, DismissPopupThenBuy, ScrollToItem, CheckboxTask)
}
TASK_KINDS: tuple[str, ...] = tuple(TASKS)

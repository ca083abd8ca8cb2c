"""The per-minute chart as SVG geometry, drawn on the server (no script, nothing fetched)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

WIDTH, HEIGHT = 1200, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 28  # room for the axis labels
MINUTES = 24 * 60


@dataclass(frozen=True)
class Series:
    code: str
    label: str
    css: str
    total: int
    points: str  # an SVG polyline's points


@dataclass(frozen=True)
class Tick:
    x: float
    y: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    series: list[Series]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    plot_left: int
    plot_right: int
    plot_bottom: int


def _x(i: int) -> float:
    return round(LEFT + (WIDTH - LEFT - RIGHT) * i / (MINUTES - 1), 1)


def _y(value: int, top: int) -> float:
    return round(HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * value / top, 1)


def nice_top(peak: int) -> int:
    """The y axis' top: 1, 2 or 5 times a power of ten, at least the peak."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= peak:
                return step * m
        step *= 10


def draw(rows: list[tuple[datetime, str, int]], now: datetime, codes: list[tuple[str, str, str]]) -> Chart:
    """`rows` are (minute, code, count); `codes` (code, label, css class) in drawing order.
    The x axis is the 24 hours to the current minute; a minute with no row is a zero."""
    first = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)
    values = {code: [0] * MINUTES for code, _, _ in codes}
    for minute, code, n in rows:
        i = int((minute - first).total_seconds() // 60)
        if 0 <= i < MINUTES and code in values:
            values[code][i] += n
    top = nice_top(max((max(v) for v in values.values()), default=0) or 1)
    series = [Series(code, label, css, sum(values[code]),
                     " ".join(f"{_x(i)},{_y(v, top)}" for i, v in enumerate(values[code])))
              for code, label, css in codes]
    return Chart(WIDTH, HEIGHT, series, _x_ticks(first), _y_ticks(top), LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM)


def _x_ticks(first: datetime) -> list[Tick]:
    """A tick on every third whole hour (UTC)."""
    ticks = []
    for i in range(MINUTES):
        moment = first + timedelta(minutes=i)
        if moment.minute == 0 and moment.hour % 3 == 0:
            ticks.append(Tick(_x(i), HEIGHT - BOTTOM + 18, moment.strftime("%H:%M")))
    return ticks


def _y_ticks(top: int) -> list[Tick]:
    """Gridlines at whole, evenly spaced values: quarters of 20, fifths of 5 or 10, halves of 2."""
    parts = next(p for p in (4, 5, 2, 1) if top % p == 0)
    return [Tick(LEFT - 8, _y(top * k // parts, top), f"{top * k // parts:,}") for k in range(parts + 1)]

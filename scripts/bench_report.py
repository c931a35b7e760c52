#!/usr/bin/env python3
"""Turns the results of `arbor bench run` into charts and a markdown report.

    python3 scripts/bench_report.py RESULTS_JSON OUT_DIR

RESULTS_JSON is the file `arbor bench run` writes (top-level metadata and a list of `cells`, one
per experiment x prompt set x setting x mode; keys snake_case). Into OUT_DIR (created if needed)
go, each chart as NAME.png (dpi 120) and NAME.svg:

  speedup              speedup over plain decoding per setting, grouped by prompt set
                       (greedy cells of kind drafters and routing; dashed line at 1.0x)
  acceptance_by_depth  acceptance rate against draft depth, one line per setting, one panel
                       per prompt set (greedy cells of kind drafters)
  latency              TTFT and TPOT p50/p95/p99 per (set, setting) (greedy cells of kind
                       baseline, drafters, routing; only the set with most cells if more than
                       18 groups)
  ablation             tokens/s and acceptance against the swept parameter's value, one line per
                       prompt set, one column per parameter (kind ablation)
  remote               tokens/s per setting at each added delay (kind remote)
  cost                 tokens/s against cost per million tokens, one labelled point per cell
                       (kind cost)

and report.md: the run's metadata, then per experiment a table of its cells with the charts it
contributes to embedded beneath (relative links). A chart without data is skipped (and not
linked). Optional fields that are missing or null show as "-" and are left out of charts.

Exits 1 with a message naming the file when the results file is missing, is not JSON, or lacks
a list of `cells`. Needs matplotlib (pip install matplotlib); standard library otherwise.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after selecting the backend)
import matplotlib.transforms  # noqa: E402

DPI = 120
MAX_LATENCY_GROUPS = 18
LOCAL_KINDS = ("baseline", "drafters", "routing")
PERCENTILES = ("p50", "p95", "p99")
# Marker and dash per line where lines may coincide (ablation), so a hidden line still shows.
LINE_STYLES = [{"marker": "o", "linestyle": "-"}, {"marker": "s", "linestyle": "--"},
               {"marker": "^", "linestyle": ":"}, {"marker": "D", "linestyle": "-."}]


class ResultsError(Exception):
    """The results file is missing or malformed."""


# ---------------------------------------------------------------------------------------------
# Reading and field access


def load_results(path: str) -> dict:
    """Reads and checks the results file; raises ResultsError naming the file and the problem."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ResultsError(f"results file {path!r} does not exist") from None
    except OSError as e:
        raise ResultsError(f"cannot read results file {path!r}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultsError(f"results file {path!r} is not valid JSON: {e.msg} "
                           f"(line {e.lineno}, column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise ResultsError(f"results file {path!r} is not UTF-8 text: {e}") from None
    if not isinstance(data, dict):
        raise ResultsError(f"results file {path!r} must hold a JSON object, found {type(data).__name__}")
    if "cells" not in data:
        raise ResultsError(f"results file {path!r} has no \"cells\" list (is it the output of `arbor bench run`?)")
    cells = data["cells"]
    if not isinstance(cells, list):
        raise ResultsError(f"results file {path!r}: \"cells\" must be a list, found {type(cells).__name__}")
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise ResultsError(f"results file {path!r}: cells[{i}] must be an object, found {type(cell).__name__}")
    return data


def num(value) -> float | None:
    """`value` as a finite float, or None (missing, null, non-numeric, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def field(cell: dict, key: str) -> float | None:
    return num(cell.get(key))


def percentile(cell: dict, key: str, p: str) -> float | None:
    """cell[key][p] (e.g. ttft_ms.p95) or None."""
    block = cell.get(key)
    return num(block.get(p)) if isinstance(block, dict) else None


def text(cell: dict, key: str, default: str = "-") -> str:
    value = cell.get(key)
    return default if value is None or value == "" else str(value)


def kind(cell: dict) -> str:
    return text(cell, "kind", "")


def mode(cell: dict) -> str:
    return text(cell, "mode", "greedy")


def is_greedy(cell: dict) -> bool:
    return mode(cell) == "greedy"


def depth_curve(cell: dict) -> list[float | None]:
    values = cell.get("acceptance_by_depth")
    return [num(v) for v in values] if isinstance(values, list) else []


def experiment_of(cell: dict) -> str:
    return text(cell, "experiment", kind(cell) or "(unnamed)")


def unique(items) -> list:
    """Distinct items in order of first appearance."""
    return list(OrderedDict.fromkeys(items))


def setting_labels(cells: list[dict]) -> dict[int, str]:
    """A display label per cell (by id()): its setting, prefixed with its experiment where the
    same setting occurs in more than one experiment among `cells`, and suffixed with the mode when
    both modes occur."""
    experiments_by_setting: dict[str, set] = {}
    for c in cells:
        experiments_by_setting.setdefault(text(c, "setting"), set()).add(experiment_of(c))
    modes = {mode(c) for c in cells}
    labels = {}
    for c in cells:
        s = text(c, "setting")
        label = f"{experiment_of(c)}: {s}" if len(experiments_by_setting[s]) > 1 else s
        if len(modes) > 1:
            label += f" ({mode(c)})"
        labels[id(c)] = label
    return labels


# ---------------------------------------------------------------------------------------------
# Formatting


def fmt(value, digits: int = 1, suffix: str = "") -> str:
    v = num(value)
    return "-" if v is None else f"{v:,.{digits}f}{suffix}"


def fmt_value(value) -> str:
    """A swept parameter's value as written: 16, 0.5."""
    v = num(value)
    return "-" if v is None else f"{v:g}"


def fmt_money(value) -> str:
    """Costs: 2 decimals from 1 up, 3 significant digits below (0.0123)."""
    v = num(value)
    if v is None:
        return "-"
    return f"{v:,.2f}" if abs(v) >= 1 or v == 0 else f"{v:.3g}"


def fmt_pct(value) -> str:
    v = num(value)
    return "-" if v is None else f"{v * 100:.1f}%"


def fmt_percentiles(cell: dict, key: str) -> str:
    values = [percentile(cell, key, p) for p in PERCENTILES]
    if all(v is None for v in values):
        return "-"
    return " / ".join(fmt(v, 0 if v is not None and v >= 100 else 1) for v in values)


def fmt_identical(cell: dict) -> str:
    k = cell.get("identical_to_plain")
    if num(k) is None:
        return "-"
    n = field(cell, "prompts")
    return f"{int(k)}/{int(n)}" if n is not None else f"{int(k)}"


def fmt_router(cell: dict) -> str:
    choices = cell.get("router_choices")
    if not isinstance(choices, dict) or not choices:
        return "-"
    return ", ".join(f"{name} {count}" for name, count in choices.items())


def md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(md_escape(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Charts. Each draw_* function returns a Chart (or None when it has no data to show).


class Chart:
    def __init__(self, name: str, fig, cells: list[dict], caption: str):
        self.name = name
        self.fig = fig
        self.cells = cells  # the cells plotted; the chart goes under their experiments
        self.caption = caption

    def save(self, out_dir: str) -> None:
        for ext in ("png", "svg"):
            self.fig.savefig(os.path.join(out_dir, f"{self.name}.{ext}"), dpi=DPI, bbox_inches="tight")
        plt.close(self.fig)


class Palette:
    """One colour per label, the same in every chart."""

    # tab10, then the lighter shades of tab20: 20 distinct colours before any repeats.
    CYCLE = [plt.get_cmap("tab10")(i) for i in range(10)] + [plt.get_cmap("tab20")(2 * i + 1) for i in range(10)]

    def __init__(self):
        self.colors: dict[str, tuple] = {}

    def __call__(self, label: str):
        if label not in self.colors:
            self.colors[label] = self.CYCLE[len(self.colors) % len(self.CYCLE)]
        return self.colors[label]


def legend_below(fig, handles, labels, ncol_max: int = 4) -> None:
    """A figure legend under the panels (keeps it off the data; bbox_inches="tight" keeps it)."""
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(ncol_max, len(labels)), frameon=False, fontsize=9)


def grouped_bars(ax, groups: list[str], series: list[str], value, color, bar_label=None,
                 width_total: float = 0.8):
    """Bars for each (group, series) with value(group, series) not None. Returns legend handles."""
    width = width_total / max(len(series), 1)
    handles = {}
    for j, s in enumerate(series):
        xs, ys = [], []
        for i, g in enumerate(groups):
            v = value(g, s)
            if v is not None:
                xs.append(i - width_total / 2 + width * (j + 0.5))
                ys.append(v)
        if not xs:
            continue
        bars = ax.bar(xs, ys, width * 0.92, color=color(s), label=s)
        handles[s] = bars
        if bar_label:
            many = len(series) * len(groups) > 12
            ax.bar_label(bars, labels=[bar_label(y) for y in ys], fontsize=7 if many else 8,
                         rotation=90 if many else 0, padding=2)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    return handles


def draw_speedup(cells: list[dict], palette: Palette) -> Chart | None:
    rows = [c for c in cells if kind(c) in ("drafters", "routing") and is_greedy(c)
            and field(c, "speedup") is not None and text(c, "setting") != "plain"]
    if not rows:
        return None
    labels = setting_labels(rows)
    sets = unique(text(c, "set") for c in rows)
    series = unique(labels[id(c)] for c in rows)
    table = {(text(c, "set"), labels[id(c)]): field(c, "speedup") for c in rows}
    width = max(6.5, 1.0 + len(sets) * (0.45 * len(series) + 0.6))
    fig, ax = plt.subplots(figsize=(min(width, 16), 4.8))
    grouped_bars(ax, sets, series, lambda g, s: table.get((g, s)), palette, bar_label=lambda y: f"{y:.2f}×")
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="plain (1.0×)")
    top = max(table.values())
    ax.set_ylim(0, max(top, 1.0) * 1.18)
    ax.set_ylabel("speedup over plain decoding (×)")
    ax.set_xlabel("prompt set")
    ax.set_title("Speedup over plain decoding (greedy)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    caption = ("Speedup of each setting over plain decoding on the same prompts (greedy), grouped "
               "by prompt set; the dashed line is plain decoding (1.0×), bars above it are faster.")
    return Chart("speedup", fig, rows, caption)


def draw_acceptance_by_depth(cells: list[dict], palette: Palette) -> Chart | None:
    rows = [c for c in cells if kind(c) == "drafters" and is_greedy(c)
            and any(v is not None for v in depth_curve(c))]
    if not rows:
        return None
    labels = setting_labels(rows)
    sets = unique(text(c, "set") for c in rows)
    max_depth = max(len(depth_curve(c)) for c in rows)
    fig, axes = plt.subplots(1, len(sets), figsize=(max(5.0, 4.2 * len(sets)), 4.0), sharey=True,
                             squeeze=False)
    handles = {}
    for ax, s in zip(axes[0], sets):
        for c in rows:
            if text(c, "set") != s:
                continue
            curve = depth_curve(c)  # a missing depth (None -> NaN) leaves a gap in the line
            label = labels[id(c)]
            (line,) = ax.plot(range(1, len(curve) + 1), [math.nan if v is None else v for v in curve],
                              marker="o", markersize=4, color=palette(label), label=label)
            handles.setdefault(label, line)
        ax.set_title(s)
        ax.set_xlabel("draft depth")
        ax.set_ylim(0, 1.02)
        ax.set_xticks(range(1, max_depth + 1))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("acceptance rate")
    fig.suptitle("Acceptance rate by draft depth (greedy)")
    fig.tight_layout()
    legend_below(fig, list(handles.values()), list(handles.keys()))
    caption = ("Fraction of drafted tokens accepted at each depth of the draft (1 = the first "
               "token after the verified prefix), one line per setting, one panel per prompt set "
               "(greedy).")
    return Chart("acceptance_by_depth", fig, rows, caption)


def draw_latency(cells: list[dict], palette: Palette) -> Chart | None:
    rows = [c for c in cells if kind(c) in LOCAL_KINDS and is_greedy(c)
            and any(percentile(c, key, p) is not None for key in ("ttft_ms", "tpot_ms") for p in PERCENTILES)]
    if not rows:
        return None
    note = ""
    if len(rows) > MAX_LATENCY_GROUPS:
        counts = OrderedDict()
        for c in rows:
            counts[text(c, "set")] = counts.get(text(c, "set"), 0) + 1
        busiest = max(counts, key=counts.get)
        rows = [c for c in rows if text(c, "set") == busiest]
        note = f" — prompt set {busiest} only"
    # Sets side by side (stable, in order of first appearance); within a set, one group per setting.
    sets = unique(text(c, "set") for c in rows)
    rows = sorted(rows, key=lambda c: sets.index(text(c, "set")))
    labels = setting_labels(rows)
    groups = [f"{text(c, 'set')}/{labels[id(c)]}" for c in rows]
    by_group = dict(zip(groups, rows))
    groups = unique(groups)
    width = min(16.0, max(7.0, 0.75 * len(groups) + 2.0))
    fig, axes = plt.subplots(2, 1, figsize=(width, 7.6), sharex=True)
    shades = {"p50": "#4c72b0", "p95": "#dd8452", "p99": "#c44e52"}
    handles = {}
    for ax, key, ylabel in ((axes[0], "ttft_ms", "time to first token (ms)"),
                            (axes[1], "tpot_ms", "time per output token (ms)")):
        drawn = grouped_bars(ax, groups, list(PERCENTILES),
                             lambda g, p, key=key: percentile(by_group[g], key, p), shades.get)
        if not drawn:
            ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center", color="gray")
            ax.set_yticks([])
        handles.update(drawn)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    # Tick labels name the setting; the prompt sets are named along the top, with separators.
    tick_labels = [labels[id(by_group[g])] for g in groups]
    axes[1].set_xticks(range(len(groups)))
    axes[1].set_xticklabels(tick_labels)
    rotate = len(groups) * max(len(t) for t in tick_labels) > 10 * width  # ~0.075 in per character
    plt.setp(axes[1].get_xticklabels(), rotation=40 if rotate else 0, ha="right" if rotate else "center",
             rotation_mode="anchor", fontsize=9)
    if len(sets) > 1:
        starts = [next(i for i, g in enumerate(groups) if text(by_group[g], "set") == s) for s in sets]
        ends = starts[1:] + [len(groups)]
        for ax in axes:
            for x in starts[1:]:
                ax.axvline(x - 0.5, color="gray", linewidth=0.8, linestyle=":")
        top = axes[0].secondary_xaxis("top")
        top.set_xticks([(a + b - 1) / 2 for a, b in zip(starts, ends)])
        top.set_xticklabels(sets, fontweight="bold")
        top.tick_params(length=0)
    order = [p for p in PERCENTILES if p in handles]
    axes[0].legend([handles[p] for p in order], order, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                   frameon=False, fontsize=9, title="percentile")
    fig.suptitle(f"Latency percentiles (greedy, local){note}")
    fig.tight_layout()
    caption = ("Time to first token (top) and time per output token after the first (bottom), "
               "p50/p95/p99 in ms, per prompt set and setting (greedy, local decoding)"
               + (f"; only prompt set {text(rows[0], 'set')}, the one with most cells, to keep "
                  "the chart readable." if note else "."))
    return Chart("latency", fig, rows, caption)


def draw_ablation(cells: list[dict], palette: Palette) -> Chart | None:
    rows = [c for c in cells if kind(c) == "ablation" and field(c, "ablation_value") is not None]
    if not rows:
        return None
    params = unique(text(c, "ablation_parameter", "parameter") for c in rows)
    # One line per prompt set; add the drafter / mode to the line's name only where they vary (the
    # setting's label names the swept value too, so it would split every line into points).
    vary_setting = len({text(c, "drafter") for c in rows}) > 1
    vary_mode = len({mode(c) for c in rows}) > 1

    def line_name(c):
        name = text(c, "set")
        if vary_setting:
            name += f" · {text(c, 'drafter')}"
        if vary_mode:
            name += f" ({mode(c)})"
        return name

    fig, axes = plt.subplots(2, len(params), figsize=(max(5.5, 4.4 * len(params)), 6.4),
                             squeeze=False, sharex="col")
    names = unique(line_name(c) for c in rows)
    set_colors = Palette()
    handles = {}
    for j, param in enumerate(params):
        mine = [c for c in rows if text(c, "ablation_parameter", "parameter") == param]
        for name in unique(line_name(c) for c in mine):
            line_cells = sorted((c for c in mine if line_name(c) == name), key=lambda c: field(c, "ablation_value"))
            for i, key in enumerate(("tokens_per_second", "acceptance_rate")):
                pts = [(field(c, "ablation_value"), field(c, key)) for c in line_cells if field(c, key) is not None]
                if not pts:
                    continue
                style = LINE_STYLES[names.index(name) % len(LINE_STYLES)]
                (line,) = axes[i][j].plot([p[0] for p in pts], [p[1] for p in pts], color=set_colors(name),
                                          label=name, markersize=5, **style)
                handles.setdefault(name, line)
        values = sorted({field(c, "ablation_value") for c in mine})
        # Geometric sweeps (8, 16, 32, 64 nodes) on a log-2 axis, so the points are evenly spaced.
        if len(values) > 2 and values[0] > 0 and all(b / a >= 1.9 for a, b in zip(values, values[1:])):
            for i in range(2):
                axes[i][j].set_xscale("log", base=2)
                axes[i][j].minorticks_off()
        if len(values) <= 10:
            axes[1][j].set_xticks(values)
            axes[1][j].set_xticklabels([f"{v:g}" for v in values])
        axes[0][j].set_title(f"swept: {param}")
        axes[1][j].set_xlabel(param)
        axes[1][j].set_ylim(0, 1.02)
        for i in range(2):
            axes[i][j].grid(alpha=0.3)
    axes[0][0].set_ylabel("tokens/s")
    axes[1][0].set_ylabel("acceptance rate")
    fig.suptitle("Ablation: tokens/s and acceptance against the swept parameter")
    fig.tight_layout()
    legend_below(fig, list(handles.values()), list(handles.keys()))
    caption = ("Tokens/s (top) and acceptance rate (bottom) as one drafting parameter is swept "
               "(one column per parameter), one line per prompt set.")
    return Chart("ablation", fig, rows, caption)


def draw_remote(cells: list[dict], palette: Palette) -> Chart | None:
    rows = [c for c in cells if kind(c) == "remote" and field(c, "tokens_per_second") is not None]
    if not rows:
        return None
    labels = setting_labels(rows)
    sets = unique(text(c, "set") for c in rows)
    series = unique(labels[id(c)] for c in rows)
    fig, axes = plt.subplots(1, len(sets), figsize=(max(6.0, 5.0 * len(sets)), 4.3), squeeze=False,
                             sharey=True)
    handles = {}
    for ax, s in zip(axes[0], sets):
        mine = [c for c in rows if text(c, "set") == s]
        delays = sorted({field(c, "delay_ms") for c in mine if field(c, "delay_ms") is not None})
        groups = [f"{d:g} ms" for d in delays] + (["?"] if any(field(c, "delay_ms") is None for c in mine) else [])
        table = {}
        for c in mine:
            d = field(c, "delay_ms")
            table[(f"{d:g} ms" if d is not None else "?", labels[id(c)])] = field(c, "tokens_per_second")
        for name, bars in grouped_bars(ax, groups, series, lambda g, k: table.get((g, k)), palette).items():
            handles.setdefault(name, bars)
        ax.set_title(s)
        ax.set_xlabel("added round-trip delay")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0][0].set_ylabel("tokens/s")
    fig.suptitle("Remote target: tokens/s by added delay")
    fig.tight_layout()
    legend_below(fig, list(handles.values()), list(handles.keys()))
    caption = ("Tokens/s of each setting with the target behind a network link, at each added "
               "round-trip delay, one panel per prompt set.")
    return Chart("remote", fig, rows, caption)


def label_points(ax, points: list[tuple[float, float]], labels: list[str], fontsize: int = 8) -> None:
    """Writes labels[i] next to points[i], trying eight positions around each point and keeping
    the first that overlaps neither another label nor a marker (else the least overlapping one).
    Call after the axes' limits are final."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    markers = [matplotlib.transforms.Bbox.from_bounds(x - 6, y - 6, 12, 12) for x, y in map(to_px, points)]
    candidates = [(6, 4, "left", "bottom"), (6, -4, "left", "top"), (-6, 4, "right", "bottom"),
                  (-6, -4, "right", "top"), (0, 8, "center", "bottom"), (0, -8, "center", "top"),
                  (10, 0, "left", "center"), (-10, 0, "right", "center")]
    placed: list = []
    frame = ax.get_window_extent(renderer)

    def overlap(a, b) -> float:
        w = min(a.x1, b.x1) - max(a.x0, b.x0)
        h = min(a.y1, b.y1) - max(a.y0, b.y0)
        return w * h if w > 0 and h > 0 else 0.0

    # Points in order of x, then y, so neighbours are labelled one after another.
    for i in sorted(range(len(points)), key=lambda i: points[i]):
        best = None
        for dx, dy, ha, va in candidates:
            ann = ax.annotate(labels[i], points[i], xytext=(dx, dy), textcoords="offset points",
                              fontsize=fontsize, ha=ha, va=va)
            box = ann.get_window_extent(renderer)
            cost = sum(overlap(box, b) for b in placed) + sum(overlap(box, m) for j, m in enumerate(markers) if j != i)
            cost += box.width * box.height - overlap(box, frame)  # outside the axes
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann, box)
            else:
                ann.remove()
            if cost == 0:
                break
        placed.append(best[2])


def draw_cost(cells: list[dict], palette: Palette) -> Chart | None:
    rows = [c for c in cells if kind(c) == "cost" and field(c, "tokens_per_second") is not None
            and field(c, "cost_per_million_tokens") is not None]
    if not rows:
        return None
    # One panel per prompt set (and per objective, whose units differ), so each panel's labels are few.
    objectives = unique(text(c, "objective") for c in rows)
    delays = {field(c, "delay_ms") for c in rows}

    def cost_label(c):  # the setting, and the added delay where cost cells were run at several
        d = field(c, "delay_ms")
        return text(c, "setting") + (f" @{d:g} ms" if len(delays) > 1 and d is not None else "")

    panels = unique((text(c, "objective"), text(c, "set")) for c in rows)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(6.5, 5.0 * ncols), 4.6 * nrows), squeeze=False,
                             sharey=True)
    for ax, (objective, s) in zip(axes.flat, panels):
        mine = [c for c in rows if (text(c, "objective"), text(c, "set")) == (objective, s)]
        points = [(field(c, "cost_per_million_tokens"), field(c, "tokens_per_second")) for c in mine]
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=40,
                   color=[palette(text(c, "setting")) for c in mine], edgecolors="black", linewidths=0.5,
                   zorder=3)
        ax.margins(x=0.2, y=0.15)
        ax.set_title(s if len(objectives) == 1 else f"{s} — {objective}")
        ax.set_xlabel(cost_axis_label(objective))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("tokens/s")
    fig.suptitle("Speed against cost (up and to the left is better)")
    fig.tight_layout()
    # Labels last: their placement needs the final axes limits and layout.
    for ax, (objective, s) in zip(axes.flat, panels):
        mine = [c for c in rows if (text(c, "objective"), text(c, "set")) == (objective, s)]
        label_points(ax, [(field(c, "cost_per_million_tokens"), field(c, "tokens_per_second")) for c in mine],
                     [cost_label(c) for c in mine])
    caption = ("Tokens/s against cost per million generated tokens"
               + (f" (objective {objectives[0]})" if len(objectives) == 1 and objectives[0] != "-" else
                  " (one panel per objective)" if len(objectives) > 1 else "")
               + ", one point per cell labelled with its setting, one panel per prompt set; points up "
                 "and to the left are faster and cheaper.")
    return Chart("cost", fig, rows, caption)


def cost_axis_label(objective):
    """The cost axis names its unit: the energy objectives count joules, the others dollars."""
    if objective in ("-", ""):
        return "cost per million tokens"
    unit = "J" if "energy" in objective else "$"
    return f"{unit} per million tokens ({objective})"


DRAWERS = (draw_speedup, draw_acceptance_by_depth, draw_latency, draw_ablation, draw_remote, draw_cost)


# ---------------------------------------------------------------------------------------------
# Report


def metadata_lines(data: dict, cells: list[dict]) -> list[str]:
    machine = data.get("machine")
    if isinstance(machine, dict):
        parts = [str(machine["cpu"])] if machine.get("cpu") else []
        if machine.get("cores") is not None:
            parts.append(f"{machine['cores']} cores")
        parts += [f"{k} {v}" for k, v in machine.items() if k not in ("cpu", "cores") and v is not None]
        machine_text = ", ".join(parts) or "-"
    else:
        machine_text = "-" if machine is None else str(machine)
    drafts = data.get("draft_models")
    drafts_text = ", ".join(map(str, drafts)) if isinstance(drafts, list) and drafts else (
        str(drafts) if drafts else "-")
    prompts_text = "-"
    if data.get("prompts_per_set") is not None:
        prompts_text = str(data["prompts_per_set"])
    else:
        per_set = OrderedDict()
        for c in cells:
            if field(c, "prompts") is not None:
                per_set.setdefault(text(c, "set"), set()).add(int(field(c, "prompts")))
        counts = {n for ns in per_set.values() for n in ns}
        if len(counts) == 1:
            prompts_text = str(counts.pop())
        elif per_set:
            prompts_text = ", ".join(f"{s} {'/'.join(map(str, sorted(ns)))}" for s, ns in per_set.items())
    items = [
        ("target", text(data, "target")),
        ("draft models", drafts_text),
        ("machine", machine_text),
        ("threads", text(data, "threads")),
        ("max tokens", text(data, "max_tokens")),
        ("prompts per set", prompts_text),
        ("date", text(data, "created")),
        ("energy source", text(data, "energy_source")),
        ("config", text(data, "config")),
    ]
    return [f"- **{k}**: {md_escape(v)}" for k, v in items]


def experiment_table(cells: list[dict]) -> str:
    """A markdown table of `cells`. Kind-specific columns (ablation, remote, cost, routing) appear
    when a cell is of that kind or has a value for them."""
    kinds = {kind(c) for c in cells}

    def wanted(for_kind: str, *keys: str) -> bool:
        return for_kind in kinds or any(c.get(k) is not None for c in cells for k in keys)

    columns = [("set", lambda c: text(c, "set")), ("setting", lambda c: text(c, "setting")), ("mode", mode)]
    if wanted("ablation", "ablation_parameter", "ablation_value"):
        columns += [("parameter", lambda c: text(c, "ablation_parameter")),
                    ("value", lambda c: fmt_value(c.get("ablation_value")))]
    if wanted("remote", "delay_ms"):
        columns += [("delay ms", lambda c: fmt(c.get("delay_ms"), 0))]
    columns += [("tok/s", lambda c: fmt(c.get("tokens_per_second"), 1)),
                ("speedup", lambda c: fmt(c.get("speedup"), 2, "×")),
                ("acceptance", lambda c: fmt_pct(c.get("acceptance_rate"))),
                ("tokens/round", lambda c: fmt(c.get("mean_accepted_length"), 2)),
                ("verify batch", lambda c: fmt(c.get("mean_verify_batch_size"), 1)),
                ("TTFT p50/p95/p99 ms", lambda c: fmt_percentiles(c, "ttft_ms")),
                ("TPOT p50/p95/p99 ms", lambda c: fmt_percentiles(c, "tpot_ms")),
                ("peak RSS MiB", lambda c: fmt(c.get("peak_rss_mib"), 0)),
                ("identical", fmt_identical)]
    if wanted("remote", "bytes_per_token"):
        columns += [("bytes/token", lambda c: fmt(c.get("bytes_per_token"), 1))]
    if wanted("cost", "cost_per_million_tokens"):
        columns += [("cost/Mtok", lambda c: fmt_money(c.get("cost_per_million_tokens"))),
                    ("objective", lambda c: text(c, "objective"))]
    if wanted("routing", "router_choices"):
        columns += [("router choices", fmt_router)]
    left = {"set", "setting", "mode", "parameter", "objective", "router choices"}
    header = [name for name, _ in columns]
    right = {i for i, name in enumerate(header) if name not in left}
    return md_table(header, [[get(c) for _, get in columns] for c in cells], right)


def slice_table(cells: list[dict]) -> str | None:
    """Per-set slices of the mixed-workload cells (`by_set`): each setting's tok/s and speedup over
    plain decoding on the prompts of each set inside the mix; None when no cell has slices."""
    mixed = [c for c in cells if isinstance(c.get("by_set"), dict) and c["by_set"]]
    if not mixed:
        return None
    sets = unique(s for c in mixed for s in c["by_set"])
    header = ["setting", "mode", "all: tok/s", "all: speedup"]
    for s in sets:
        header += [f"{s}: tok/s", f"{s}: speedup"]
    rows = []
    for c in mixed:
        row = [text(c, "setting"), mode(c), fmt(c.get("tokens_per_second"), 1), fmt(c.get("speedup"), 2, "×")]
        for s in sets:
            part = c["by_set"].get(s) or {}
            row += [fmt(part.get("tokens_per_second"), 1), fmt(part.get("speedup"), 2, "×")]
        rows.append(row)
    return md_table(header, rows, set(range(2, len(header))))


def write_report(data: dict, results_path: str, charts: list[Chart], out_dir: str) -> str:
    cells = data["cells"]
    experiments: OrderedDict[str, list[dict]] = OrderedDict()
    for c in cells:
        experiments.setdefault(experiment_of(c), []).append(c)
    # Each chart goes under the last experiment it draws cells from (so its cells' tables come first).
    charts_under: dict[str, list[Chart]] = {}
    order = list(experiments)
    for chart in charts:
        names = unique(experiment_of(c) for c in chart.cells)
        home = max(names, key=order.index)
        charts_under.setdefault(home, []).append(chart)

    lines = [f"# Arbor benchmark report: {md_escape(text(data, 'target', 'unknown target'))}", ""]
    lines += [f"Results: `{os.path.basename(results_path)}`", ""]
    lines += metadata_lines(data, cells)
    lines += ["", "Speedup is over plain decoding on the same prompt set and mode in the same run; "
              "acceptance is the fraction of drafted tokens accepted; tokens/round is the mean "
              "number of tokens accepted per verification round; identical counts greedy outputs "
              "equal to plain decoding's (k/n prompts). \"-\" means not measured or not applicable.", ""]
    if not cells:
        lines += ["_The results hold no cells._", ""]
    for name, exp_cells in experiments.items():
        kinds = unique(kind(c) for c in exp_cells)
        lines += [f"## {md_escape(name)}", "", f"Kind: {', '.join(k or '-' for k in kinds)}; "
                  f"{len(exp_cells)} cell{'s' if len(exp_cells) != 1 else ''}.", ""]
        lines += [experiment_table(exp_cells), ""]
        # The mix's per-set slices under the experiment that ran settings on it, plain decoding's first.
        mixed_here = [c for c in exp_cells if c.get("by_set")] if name != "baseline" else []
        plain = [c for c in cells if c.get("by_set") and experiment_of(c) == "baseline"]
        slices = slice_table(plain + mixed_here) if mixed_here else None
        if slices:
            lines += ["The mixed workload by prompt set: each setting on the mix's prompts of each "
                      "set (speedup over plain decoding on the same prompts of the mix).", "", slices, ""]
        for chart in charts_under.get(name, []):
            sources = unique(experiment_of(c) for c in chart.cells)
            also = f" Drawn from experiments {', '.join(sources)}." if len(sources) > 1 else ""
            lines += [f"![{chart.name}]({chart.name}.png)", "", chart.caption + also, ""]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Charts and a markdown report from `arbor bench run` results.")
    parser.add_argument("results", metavar="RESULTS_JSON", help="results file written by `arbor bench run`")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="directory for the charts and report.md")
    args = parser.parse_args(argv)
    try:
        data = load_results(args.results)
    except ResultsError as e:
        print(f"bench_report: error: {e}", file=sys.stderr)
        return 1
    os.makedirs(args.out_dir, exist_ok=True)
    if not data["cells"]:
        print(f"bench_report: warning: results file {args.results!r} holds no cells", file=sys.stderr)
    palette = Palette()
    charts = []
    for draw in DRAWERS:
        chart = draw(data["cells"], palette)
        if chart is not None:
            chart.save(args.out_dir)
            charts.append(chart)
    report = write_report(data, args.results, charts, args.out_dir)
    for chart in charts:
        print(os.path.join(args.out_dir, f"{chart.name}.png"), "and .svg")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

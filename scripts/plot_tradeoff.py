#!/usr/bin/env python3
"""Draws speed-cost trade-off charts from `arbor tradeoff` reports.

    python3 scripts/plot_tradeoff.py DIR_OR_JSON [more ...] [--shared DIR_OR_JSON ...]
        [--objective total_cost] [--out DIR] [--name tradeoff] [--table --objectives total_cost energy_total]

Each input is a `tradeoff.json` (or a directory holding one). One panel per (prompt set, label):
tokens/s against cost per million tokens under the objective, one point per setting; the
adaptive points (cs = 0 ... 1) run for that objective are joined in cs order and labelled with
their cs, the static baselines (whose costs hold under every objective) are drawn as separate
markers with their names. --shared reports (e.g. server-side baselines, measured without a
network) join every panel of their prompt set. Writes NAME.png and NAME.svg into --out (default:
the first input's directory). With --table, prints markdown tables instead (one per objective
and panel). Needs matplotlib for charts (pip install matplotlib).
"""
import argparse
import json
import math
import os
import sys

UNITS = {"total_cost": "$", "api_cost": "$", "energy_total": "J", "draft_energy": "J", "target_energy": "J"}
BASELINE_MARKERS = ["s", "^", "D", "v", "P", "X", "<", ">"]


def cost_per_mtok(point, objective, rates):
    """Cost per million generated tokens of one point under `objective` (as Arbor computes it)."""
    r = point["resources"]
    tokens = point["tokens"]
    if tokens <= 0:
        return 0.0
    target_usd = r["target_ms"] / 3_600_000 * rates["target_per_hour"]
    draft_usd = r["draft_j"] / 3_600_000 * rates["electricity_per_kwh"]
    up_usd = r["bytes_up"] / 1e9 * rates["user_comm_per_gb"]
    down_usd = r["bytes_down"] / 1e9 * (rates["user_comm_per_gb"] + rates["cloud_outbound_per_gb"])
    value = {
        "total_cost": target_usd + draft_usd + up_usd + down_usd,
        "api_cost": target_usd + down_usd,
        "energy_total": r["draft_j"] + r["target_j"],
        "draft_energy": r["draft_j"],
        "target_energy": r["target_j"],
    }[objective]
    return value / tokens * 1e6


def tokens_per_second(point):
    ms = point["decode_ms"]
    return max(point["tokens"] - point["prompts"], 0) / ms * 1000 if ms > 0 else 0.0


def load(paths):
    reports = []
    for p in paths:
        f = os.path.join(p, "tradeoff.json") if os.path.isdir(p) else p
        with open(f) as h:
            reports.append((f, json.load(h)))
    return reports


def energy_note(reports):
    draft = {pt.get("draft_energy_source") for _, r in reports for pt in r["points"]} - {None}
    target = {pt.get("target_energy_source") for _, r in reports for pt in r["points"]} - {None}
    return "energy: draft %s, target %s" % ("/".join(sorted(draft)) or "modelled", "/".join(sorted(target)) or "modelled")


def panels(reports, shared):
    """(prompt set, label) → reports; shared reports join every panel of their prompt set."""
    groups = {}
    for _, r in reports:
        groups.setdefault((r["prompt_set"], r.get("label", "")), []).append(r)
    for _, r in shared:
        for key in groups:
            if key[0] == r["prompt_set"]:
                groups[key].append(r)
    return groups


def reference_hashes(groups, key):
    """Outputs of plain decoding in a panel (server alone or one token per round trip)."""
    for name in ("server-alone", "one-per-rtt"):
        for r in groups[key]:
            for pt in r["points"]:
                if pt["name"] == name and pt.get("output_hashes"):
                    return pt["output_hashes"]
    return None


def print_tables(reports, shared, objectives):
    groups = panels(reports, shared)
    for objective in objectives:
        unit = UNITS.get(objective, "")
        for key in sorted(groups):
            print("\n**%s, %s — objective %s** (cost per million tokens in %s)\n" % (key[0], key[1], objective, unit))
            print("| setting | tok/s | %s per Mtok | total $ per Mtok | J per token | acceptance | identical to plain |" % objective)
            print("|---|---:|---:|---:|---:|---:|---:|")
            ref = reference_hashes(groups, key)
            for r in groups[key]:
                for pt in r["points"]:
                    if (pt["kind"] == "adaptive" or pt["name"].startswith("cs=")) and r["objective"] != objective:
                        continue
                    spec = pt.get("speculative") or {}
                    print("| %s | %.2f | %.4g | %.4f | %.3f | %s | %d/%d |" % (
                        pt["name"] if pt["kind"] != "baseline" or pt["name"].startswith("cs=") else pt["name"] + " (static)",
                        tokens_per_second(pt), cost_per_mtok(pt, objective, r["rates"]),
                        cost_per_mtok(pt, "total_cost", r["rates"]), cost_per_mtok(pt, "energy_total", r["rates"]) / 1e6,
                        ("%.0f %%" % (100 * spec["acceptance_rate"])) if spec.get("drafted_nodes") else "-",
                        sum(a == b for a, b in zip(pt.get("output_hashes", []), ref)) if ref else pt["identical"],
                        len(ref) if ref else pt["compared"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--shared", nargs="*", default=[], help="reports added to every panel of their prompt set")
    ap.add_argument("--objective", help="x axis (default: each report's objective; total_cost for tps)")
    ap.add_argument("--table", action="store_true", help="print markdown tables instead of drawing")
    ap.add_argument("--objectives", nargs="*", default=["total_cost", "energy_total"], help="objectives of the tables")
    ap.add_argument("--out")
    ap.add_argument("--name", default="tradeoff")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    if args.table:
        print_tables(load(args.inputs), load(args.shared), args.objectives)
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_tradeoff: matplotlib is not installed (pip install matplotlib)")

    reports = load(args.inputs)
    shared = load(args.shared)
    groups = panels(reports, shared)
    keys = sorted(groups, key=lambda k: (k[0], k[1]))
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(5.2 * cols, 7), 4.2 * rows + 0.6), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.axis("off")
    for ax, key in zip(axes.flat, keys):
        adaptive, baselines = [], []
        objective = None
        for r in groups[key]:
            objective = args.objective or (r["objective"] if r["objective"] != "tps" else "total_cost")
        for r in groups[key]:
            for pt in r["points"]:
                if (pt["kind"] == "adaptive" or pt["name"].startswith("cs=")) and args.objective and r["objective"] != args.objective:
                    continue  # the policy ran for another objective
                entry = (cost_per_mtok(pt, objective, r["rates"]), tokens_per_second(pt), pt)
                (adaptive if pt["kind"] == "adaptive" else baselines).append(entry)
        adaptive.sort(key=lambda e: e[2].get("cs", 0))
        if adaptive:
            ax.plot([e[0] for e in adaptive], [e[1] for e in adaptive], "-o", color="tab:blue", label="Arbor (cs 0 → 1)", zorder=3)
            for x, y, pt in adaptive:
                ax.annotate("cs %g" % pt.get("cs", 0), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7, color="tab:blue")
        for i, (x, y, pt) in enumerate(baselines):
            if pt["kind"] == "service_level":
                ax.scatter([x], [y], marker="*", s=140, color="gold", edgecolors="black", zorder=5, label=pt["name"])
            else:
                ax.scatter([x], [y], marker=BASELINE_MARKERS[i % len(BASELINE_MARKERS)], s=46, zorder=4, label=pt["name"])
        unit = UNITS.get(objective, "")
        ax.set_xlabel("%s per million tokens (%s)" % (objective, unit))
        ax.set_ylabel("tokens/s")
        ax.set_title("%s%s" % (key[0], (" · " + key[1]) if key[1] else ""), fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    import textwrap

    title = "\n".join(textwrap.wrap(args.title, int(13 * fig.get_figwidth()))) if args.title else ""
    fig.suptitle((title + "\n" if title else "") + energy_note(reports + shared), fontsize=9)
    fig.tight_layout()
    out = args.out or os.path.dirname(os.path.abspath(reports[0][0]))
    os.makedirs(out, exist_ok=True)
    for ext in ("png", "svg"):
        path = os.path.join(out, "%s.%s" % (args.name, ext))
        fig.savefig(path, dpi=130)
        print("wrote", path)


if __name__ == "__main__":
    main()

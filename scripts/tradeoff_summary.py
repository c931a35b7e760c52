#!/usr/bin/env python3
"""Summaries of a scripts/bench_tradeoff.sh run (used by it; also by hand).

    tradeoff_summary.py slo FRACTION REPORT.json...   prints FRACTION × the fastest tokens/s measured
    tradeoff_summary.py profile OUT_DIR              the first 10 rounds' plans, cold and warm (markdown)
    tradeoff_summary.py checks OUT_DIR               the issue's acceptance checks per environment (markdown)
"""
import glob
import json
import os
import sys

from plot_tradeoff import cost_per_mtok, tokens_per_second


def points(path):
    r = json.load(open(path))
    return r, r["points"]


def slo(fraction, files):
    best = 0.0
    for f in files:
        _, pts = points(f)
        best = max([best] + [tokens_per_second(p) for p in pts])
    print(f"{best * fraction:.3f}")


def profile(out):
    print("\n**Profile check: the first 10 rounds' plans, cold (empty profile) and warm (stored profile)**\n")
    print("| round | cold: depth, nodes sent, predicted tokens, ms predicted / measured | warm: same |")
    print("|---:|---|---|")
    plans = {}
    for name in ("cold", "warm"):
        path = os.path.join(out, f"profile-{name}.json")
        if os.path.exists(path):
            plans[name] = json.load(open(path))["stats"]["speculative"]["plans"][:10]

    def cell(p):
        return f"{p['planned_depth']}, {p['nodes']}, {p['predicted_tokens']:.2f}, {p['predicted_ms']:.0f} / {p['ms']:.0f}"

    for i in range(10):
        row = [cell(plans[n][i]) if n in plans and i < len(plans[n]) else "-" for n in ("cold", "warm")]
        print(f"| {i + 1} | {row[0]} | {row[1]} |")


def checks(out):
    envs = {}
    for f in sorted(glob.glob(os.path.join(out, "*ms-*", "tradeoff.json"))):
        r, pts = points(f)
        env = (r["prompt_set"], r["label"])
        e = envs.setdefault(env, {"static": [], "curve": {}, "slo": [], "proactive_off": None, "rates": r["rates"]})
        for p in pts:
            if p["kind"] == "service_level":
                e["slo"].append(p)
            elif p["kind"] == "adaptive":
                e["curve"].setdefault(r["objective"], []).append(p)
            elif p["name"].endswith("no-proactive"):
                e["proactive_off"] = p
                e["proactive_on_objective"] = r["objective"]
            elif p["name"].endswith("deepening"):
                # An ablation of the policy, not a static baseline.
                e.setdefault("deepening_ablations", []).append((r["objective"], p))
            else:
                e["static"].append(p)
    for f in sorted(glob.glob(os.path.join(out, "*-server", "tradeoff.json"))):
        r, pts = points(f)
        for env, e in envs.items():
            if env[0] == r["prompt_set"]:
                e["static"] += pts
    print("\n**Acceptance checks per environment** (total cost in $ per million tokens; energy in J per token)\n")
    print("| set | delay | curve monotone (total_cost / energy_total) | static baselines dominating the curve | vs tree16w4 at ≥ its tok/s | vs chain4 at ≥ its tok/s | SLO met, cost vs cheapest static meeting it | proactive at cs 0 | deepening: cost and tok/s ÷ without |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (pset, label), e in sorted(envs.items()):
        rates = e["rates"]
        mono = []
        for objective in ("total_cost", "energy_total"):
            curve = sorted(e["curve"].get(objective, []), key=lambda p: p["cs"])
            ok = all(cost_per_mtok(b, objective, rates) <= cost_per_mtok(a, objective, rates) * 1.05
                     and tokens_per_second(b) <= tokens_per_second(a) * 1.05 for a, b in zip(curve, curve[1:]))
            mono.append(("yes" if ok else "no") if curve else "-")
        curve = e["curve"].get("total_cost", [])
        # A static baseline beats the curve where it is both faster and cheaper than a point on it.
        dominated = []
        for st in e["static"]:
            for objective in ("total_cost", "energy_total"):
                beaten = [c["name"] for c in e["curve"].get(objective, [])
                          if tokens_per_second(st) > tokens_per_second(c) and cost_per_mtok(st, objective, rates) < cost_per_mtok(c, objective, rates)]
                if beaten:
                    dominated.append(f"{st['name']} beats {', '.join(beaten)} ({objective})")

        def versus(name):
            base = next((s for s in e["static"] if s["name"] == name), None)
            if not base or not curve:
                return "-"
            fast = [c for c in curve if tokens_per_second(c) >= tokens_per_second(base)]
            if not fast:
                return f"no curve point at ≥ {tokens_per_second(base):.1f} tok/s"
            best = min(fast, key=lambda c: cost_per_mtok(c, "total_cost", rates))
            saving = 1 - cost_per_mtok(best, "total_cost", rates) / cost_per_mtok(base, "total_cost", rates)
            return f"{saving * 100:.0f} % cheaper ({best['name']}, {tokens_per_second(best):.1f} vs {tokens_per_second(base):.1f} tok/s)"

        slo_cell = "-"
        # The policy as shipped: the first SLO run (an ablation of it follows under the same
        # name in files written before ablations were named apart).
        for p in e["slo"][:1]:
            target = float(p["name"].split("≥")[1].split()[0]) if "≥" in p["name"] else None
            if target is None:
                continue
            meeting = [s for s in e["static"] if tokens_per_second(s) >= target]
            met = tokens_per_second(p) >= target
            if meeting:
                cheapest = min(cost_per_mtok(s, "total_cost", rates) for s in meeting)
                ratio = cost_per_mtok(p, "total_cost", rates) / cheapest
                slo_cell = f"{'met' if met else 'missed'} ({tokens_per_second(p):.1f} ≥ {target:.1f}); {ratio:.2f}× the cheapest static"
            else:
                slo_cell = f"{'met' if met else 'missed'} ({tokens_per_second(p):.1f} ≥ {target:.1f}); no static baseline meets it"
        pro = "-"
        off = e["proactive_off"]
        on = next((c for c in e["curve"].get(e.get("proactive_on_objective", ""), []) if c["cs"] == off["cs"]), None) if off else None
        if off and on:
            sp = on.get("speculative") or {}
            ahead = sp.get("proactive") or {}
            pro = f"{tokens_per_second(on) / tokens_per_second(off):.2f}× ({ahead.get('hits', 0)}/{ahead.get('started', 0)} used)"
        deep = []
        for objective, ablation in e.get("deepening_ablations", []):
            policy = next((c for c in e["curve"].get(objective, []) if c["cs"] == ablation["cs"]), None)
            # Ratios of the run with deepening to the run without, whichever was the default.
            on, off = (ablation, policy) if ablation["name"].endswith(" deepening") else (policy, ablation)
            if policy:
                deep.append(f"cs={off['cs']:g} {objective}: {cost_per_mtok(on, objective, rates) / cost_per_mtok(off, objective, rates):.2f}, "
                            f"{tokens_per_second(on) / tokens_per_second(off):.2f}")
        print(f"| {pset} | {label} | {mono[0]} / {mono[1]} | {', '.join(dominated) or 'none'} | {versus('tree16w4')} | {versus('chain4')} | {slo_cell} | {pro} | {'; '.join(deep) or '-'} |")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cmd = sys.argv[1]
    if cmd == "slo":
        slo(float(sys.argv[2]), sys.argv[3:])
    elif cmd == "profile":
        profile(sys.argv[2])
    elif cmd == "checks":
        checks(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

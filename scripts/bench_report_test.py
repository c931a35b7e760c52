#!/usr/bin/env python3
"""Self-test of scripts/bench_report.py on synthetic `arbor bench run` results (a few seconds).

    python3 scripts/bench_report_test.py [-v]

Builds a results file with cells of every kind (3 prompt sets, several settings, some optional
fields null or absent), runs the script into a temporary directory and checks that every chart
(PNG and SVG) and report.md are written and non-empty, that the report names every setting and
links every chart; that sparse results skip charts without crashing; and that a missing file,
invalid JSON and a file without `cells` exit non-zero with a message naming the file.
Set BENCH_REPORT_KEEP=DIR to keep the synthetic results and output in DIR (to look at the charts).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "bench_report.py")
CHARTS = ("speedup", "acceptance_by_depth", "latency", "ablation", "remote", "cost")
SETS = ("humaneval", "mtbench", "sharegpt")


def cell(experiment, kind, set_, setting, mode="greedy", tps=20.0, speedup=1.0, **extra):
    """One cell with every field of the schema; `extra` overrides (None = null)."""
    greedy = mode == "greedy"
    c = {
        "id": f"{experiment}/{set_}/{setting}/{mode}", "experiment": experiment, "kind": kind,
        "set": set_, "setting": setting, "drafter": setting.split("-")[0], "mode": mode,
        "delay_ms": None, "ablation_parameter": None, "ablation_value": None,
        "prompts": 20, "generated_tokens": 2400, "decode_ms": 2400 / tps * 1000,
        "tokens_per_second": tps, "speedup": speedup,
        "acceptance_rate": 0.55, "mean_accepted_length": 2.1, "mean_verify_batch_size": 5.9,
        "acceptance_by_depth": [0.8, 0.6, 0.45, 0.3],
        "ttft_ms": {"p50": 2400 / tps, "p95": 5200 / tps, "p99": 6000 / tps},
        "tpot_ms": {"p50": 1000 / tps, "p95": 1400 / tps, "p99": 1600 / tps},
        "peak_rss_mib": 2100.5, "bytes_per_token": None, "cost_per_million_tokens": None,
        "objective": None, "identical_to_plain": 20 if greedy else None, "router_choices": None,
    }
    c.update(extra)
    return c


def synthetic_results() -> dict:
    cells = []
    plain_tps = {"humaneval": 16.0, "mtbench": 15.2, "sharegpt": 15.6}
    gains = {"ngram-chain": 1.25, "suffix-tree": 1.92, "model-chain": 1.61, "model-tree": 1.74}
    for s in SETS:
        base = plain_tps[s]
        cells.append(cell("baseline", "baseline", s, "plain", tps=base, acceptance_rate=None,
                          mean_accepted_length=None, mean_verify_batch_size=1.0,
                          acceptance_by_depth=None, identical_to_plain=None))
        for name, gain in gains.items():
            g = gain * (1.1 if s == "humaneval" else 0.9)
            depth = [round(0.85 * gain / 2 * 0.8 ** d, 3) for d in range(6 if "tree" in name else 4)]
            cells.append(cell("drafters", "drafters", s, name, tps=base * g, speedup=g,
                              acceptance_rate=0.4 * gain, acceptance_by_depth=depth))
        # A sampled cell (not in the greedy charts) and one whose optional fields are absent.
        cells.append(cell("drafters", "drafters", s, "suffix-tree", mode="sampled", tps=base * 1.5,
                          speedup=1.5, identical_to_plain=None))
        cells.append(cell("routing", "routing", s, "auto", tps=base * 2.0, speedup=2.0,
                          acceptance_by_depth=None,
                          router_choices={"suffix": 12, "model:qwen2.5-coder-0.5b": 8}))
    # The three sets interleaved: plain decoding and two settings, with per-set slices.
    mix_plain = {s: {"tokens_per_second": plain_tps[s]} for s in SETS}
    cells.append(cell("baseline", "baseline", "mix", "plain", tps=15.6, speedup=None, acceptance_rate=None,
                      acceptance_by_depth=None, identical_to_plain=None, by_set=mix_plain))
    for name, gain in (("suffix", 1.67), ("auto", 1.76)):
        cells.append(cell("routing", "routing", "mix", name, tps=15.6 * gain, speedup=gain, acceptance_by_depth=None,
                          by_set={s: {"tokens_per_second": plain_tps[s] * gain * (1.5 if s == "humaneval" else 0.8),
                                      "speedup": gain * (1.5 if s == "humaneval" else 0.8)} for s in SETS}))
    # A drafters cell with its optional fields missing altogether.
    cells.append({"experiment": "drafters", "kind": "drafters", "set": "sharegpt", "setting": "cross-chain",
                  "mode": "greedy", "prompts": 20, "tokens_per_second": 14.0, "speedup": None})
    for s in SETS:
        for value in (8, 16, 32, 64):
            cells.append(cell("ablation-nodes", "ablation", s, "suffix-tree", tps=20 + value ** 0.5 * (2 if s == "humaneval" else 1),
                              ablation_parameter="max_nodes", ablation_value=value,
                              acceptance_rate=0.3 + value / (200 + 40 * SETS.index(s))))
        for value in (2, 4, 6, 8):
            cells.append(cell("ablation-depth", "ablation", s, "suffix-tree", tps=22 + value * SETS.index(s) / 2,
                              ablation_parameter="max_depth", ablation_value=value,
                              acceptance_rate=None if (s, value) == ("sharegpt", 4) else 0.7 - value / 30,
                              ttft_ms=None))
    for delay in (0, 20, 80):
        for name, tps in (("plain", 15.0), ("suffix-tree", 26.0), ("model-chain", 22.0)):
            cells.append(cell("remote", "remote", "humaneval", name, tps=tps / (1 + delay / 40), speedup=None,
                              delay_ms=delay, bytes_per_token=None if name == "plain" else 310.5 + delay))
    costs = (("plain", 15.0, 1.90), ("suffix-tree", 27.0, 1.10), ("model-chain", 23.0, 1.45), ("auto", 29.0, 1.05))
    for s in ("humaneval", "mtbench"):
        for name, tps, usd in costs:
            cells.append(cell("cost", "cost", s, name, tps=tps * (1 if s == "humaneval" else 0.9), speedup=None,
                              cost_per_million_tokens=usd * (1 if s == "humaneval" else 1.08),
                              objective="total_cost"))
    return {
        "config": "configs/benchmark.yaml", "created": "2026-12-06T12:00:00Z",
        "target": "qwen2.5-coder-1.5b", "draft_models": ["qwen2.5-coder-0.5b", "smollm2-135m"],
        "machine": {"cpu": "Intel(R) Xeon(R) Processor", "cores": 2},
        "threads": 2, "max_tokens": 128, "energy_source": "modelled", "cells": cells,
    }


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=300)


class BenchReportTest(unittest.TestCase):
    def setUp(self):
        keep = os.environ.get("BENCH_REPORT_KEEP")
        if keep:
            os.makedirs(keep, exist_ok=True)
            self.dir = keep
        else:
            self._tmp = tempfile.TemporaryDirectory()
            self.addCleanup(self._tmp.cleanup)
            self.dir = self._tmp.name

    def write(self, name: str, content) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(content if isinstance(content, str) else json.dumps(content, indent=1))
        return path

    def test_full_report(self):
        data = synthetic_results()
        results = self.write("results.json", data)
        out = os.path.join(self.dir, "out")
        proc = run(results, out)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        for chart in CHARTS:
            for ext in ("png", "svg"):
                path = os.path.join(out, f"{chart}.{ext}")
                self.assertTrue(os.path.isfile(path), f"{path} missing")
                self.assertGreater(os.path.getsize(path), 1000, f"{path} too small")
            with open(os.path.join(out, f"{chart}.png"), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
            with open(os.path.join(out, f"{chart}.svg"), encoding="utf-8") as f:
                self.assertIn("<svg", f.read())
        with open(os.path.join(out, "report.md"), encoding="utf-8") as f:
            report = f.read()
        for setting in {c["setting"] for c in data["cells"]}:
            self.assertTrue(setting in report, f"setting {setting!r} not in report.md")
        for chart in CHARTS:
            self.assertEqual(report.count(f"![{chart}]({chart}.png)"), 1, chart)
        for experiment in {c["experiment"] for c in data["cells"]}:
            self.assertIn(f"## {experiment}", report)
        for text in ("qwen2.5-coder-1.5b", "smollm2-135m", "Intel(R) Xeon(R) Processor", "modelled",
                     "2026-12-06T12:00:00Z", "2.11×", "20/20", "76.8%", "suffix 12", "| 1.10 |"):
            self.assertTrue(text in report, f"{text!r} not in report.md")
        # The mix's per-set slices, in the routing section, plain decoding's row first.
        self.assertIn("The mixed workload by prompt set", report)
        self.assertIn("| plain | greedy | 15.6 | - | 16.0 | - | 15.2 | - | 15.6 | - |", report)
        self.assertIn("| auto | greedy | 27.5 | 1.76× | 42.2 | 2.64× |", report)
        self.assertLess(report.index("## routing"), report.index("The mixed workload by prompt set"))
        # Charts sit under an experiment they show: speedup after both drafters and routing tables.
        self.assertLess(report.index("## routing"), report.index("![speedup]"))
        self.assertLess(report.index("## drafters"), report.index("![acceptance_by_depth]"))
        self.assertLess(report.index("![acceptance_by_depth]"), report.index("## routing"))

    def test_sparse_results_skip_charts(self):
        # Only baseline and drafters cells, most optional fields missing: no crash, optional charts skipped.
        cells = [
            {"kind": "baseline", "experiment": "baseline", "set": "humaneval", "setting": "plain",
             "tokens_per_second": 15.0, "tpot_ms": {"p50": 66.0}},
            {"kind": "drafters", "experiment": "drafters", "set": "humaneval", "setting": "suffix-tree",
             "tokens_per_second": "fast", "speedup": 1.8, "ttft_ms": "n/a", "acceptance_by_depth": [0.7, None, 0.4]},
            {"kind": "drafters", "set": "mtbench", "setting": "ngram-chain", "mode": "sampled",
             "speedup": None, "identical_to_plain": None},
        ]
        results = self.write("sparse.json", {"target": "t", "cells": cells})
        out = os.path.join(self.dir, "sparse-out")
        proc = run(results, out)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        written = set(os.listdir(out))
        for chart in ("speedup", "acceptance_by_depth", "latency"):
            self.assertIn(f"{chart}.png", written)
        with open(os.path.join(out, "report.md"), encoding="utf-8") as f:
            report = f.read()
        for chart in ("ablation", "remote", "cost"):
            self.assertNotIn(f"{chart}.png", written)
            self.assertNotIn(f"({chart}.png)", report)
        self.assertIn("ngram-chain", report)

    def test_crowded_latency_keeps_busiest_set(self):
        sys.path.insert(0, HERE)
        import bench_report

        cells = [cell("drafters", "drafters", s, f"setting-{i}") for s in SETS for i in range(6)]
        cells += [cell("drafters", "drafters", "mtbench", "extra")]
        chart = bench_report.draw_latency(cells, bench_report.Palette())
        self.assertEqual({c["set"] for c in chart.cells}, {"mtbench"})
        self.assertIn("mtbench", chart.caption)
        bench_report.plt.close(chart.fig)

    def assertFailsNaming(self, path: str, what: str):
        proc = run(path, os.path.join(self.dir, "never"))
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(path, proc.stderr)
        self.assertIn(what, proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)

    def test_invalid_json(self):
        self.assertFailsNaming(self.write("broken.json", '{"cells": [ {"kind": '), "not valid JSON")

    def test_without_cells(self):
        self.assertFailsNaming(self.write("nocells.json", {"target": "t", "rows": []}), "no \"cells\"")

    def test_cells_not_a_list(self):
        self.assertFailsNaming(self.write("badcells.json", {"cells": {"a": 1}}), "must be a list")

    def test_cost_axis_names_its_unit(self):
        sys.path.insert(0, HERE)
        import bench_report
        self.assertEqual(bench_report.cost_axis_label("draft_energy"), "J per million tokens (draft_energy)")
        self.assertEqual(bench_report.cost_axis_label("energy_total"), "J per million tokens (energy_total)")
        self.assertEqual(bench_report.cost_axis_label("total_cost"), "$ per million tokens (total_cost)")
        self.assertEqual(bench_report.cost_axis_label("-"), "cost per million tokens")

    def test_missing_file(self):
        self.assertFailsNaming(os.path.join(self.dir, "does-not-exist.json"), "does not exist")


if __name__ == "__main__":
    unittest.main()

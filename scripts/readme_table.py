"""Print README's performance table (Markdown) from a JSON file that
``compare_backends.py --json`` wrote, with the command and machine state it recorded.

    python scripts/readme_table.py docs/perf/compare_quick.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402


def table(data, backend="cython") -> str:
    anchors = [a for a in ("ort", "openvino") if any(a in r["ms"] for r in data["layers"])]
    peak = data.get("fma_peak_gflops")
    head = (["layer", f"`{backend}` ms", "GFLOP/s"] + (["% FMA peak"] if peak else [])
            + ["torch ms", f"`{backend}` / torch"] + [f"{a} / torch" for a in anchors])
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    ratios = []
    for r in data["layers"]:
        ours, torch = r["ms"].get(backend), r.get("torch_direct_ms")
        if ours is None or torch is None:
            continue
        ratios.append(ours / torch)
        gflops = r["gflop"] / ours * 1e3
        cells = ([r["layer"], f"{ours:.3g}", f"{gflops:.0f}"]
                 + ([f"{100 * gflops / peak:.0f}"] if peak else [])
                 + [f"{torch:.3g}", f"{ours / torch:.2f}"])
        cells += [f"{r['ms'][a] / torch:.2f}" if r["ms"].get(a) else "n/a" for a in anchors]
        lines.append("| " + " | ".join(cells) + " |")
    geo = math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else float("nan")
    lines.append("")
    lines.append(f"Geometric mean {geo:.2f}x torch's time, worst layer "
                 f"{max(ratios):.2f}x, best {min(ratios):.2f}x ({len(ratios)} layers). "
                 f"Command: `{data['command']}`; {data['threads']} threads, {data['dtype']}; "
                 f"load {data['load_start']} at start, {data['load_end']} at end; numpy "
                 f"matmul ceiling {data['matmul_gflops']:.0f} GFLOP/s"
                 + (f", FMA peak {data['fma_peak_gflops']:.0f} GFLOP/s"
                    if data.get("fma_peak_gflops") else "")
                 + " in the same run.")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_version(ap, "readme_table.py")
    ap.add_argument("json_file")
    ap.add_argument("--backend", default="cython")
    args = ap.parse_args(argv)
    with open(args.json_file) as fh:
        print(table(json.load(fh), args.backend))
    return 0


if __name__ == "__main__":
    sys.exit(common.run_main(main))

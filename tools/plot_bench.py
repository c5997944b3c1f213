#!/usr/bin/env python3
"""Plots `hefun bench --json` reports as an SVG: one stacked bar per model, split into the
server time of each layer (online), the client time, and the server time prepared ahead.

No dependencies beyond the standard library, so it runs wherever the benchmark ran:

    python3 tools/plot_bench.py small.json large.json -o docs/bench.svg
"""

import argparse
import json
import sys

COLOURS = ["#4e79a7", "#59a14f", "#edc948", "#b07aa1", "#76b7b2", "#ff9da7"]
CLIENT = "#e15759"
PREPARED = "#bab0ac"


def bar_segments(report):
    """(label, ms, colour) for one model, in drawing order."""
    segments = []
    for i, layer in enumerate(report["layers"]):
        segments.append(
            (f"{layer['name']}: {layer['kind']}", layer["server_ms_median"], COLOURS[i % len(COLOURS)])
        )
    segments.append(("client (all messages)", report["client_ms_median"], CLIENT))
    prepared = report.get("server_prepare_ms_median")
    if prepared is not None:
        segments.append(("server, prepared ahead (not in the latency)", prepared, PREPARED))
    return segments


def render(reports):
    width, left, right, bar_h, gap = 900, 90, 40, 34, 26
    rows = [(r["model"], bar_segments(r), r) for r in reports]
    longest = max(sum(ms for _, ms, _ in segs) for _, segs, _ in rows)
    scale = (width - left - right) / (longest * 1.05)
    legend = []
    for _, segs, _ in rows:
        for label, _, colour in segs:
            if (label, colour) not in legend:
                legend.append((label, colour))
    height = 60 + len(rows) * (bar_h + gap) + 20 * len(legend) + 30
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="10" y="22" font-size="15">hefun: where one private inference spends its time '
        "(median ms per image)</text>",
    ]
    y = 45
    for name, segs, report in rows:
        x = left
        out.append(f'<text x="10" y="{y + bar_h * 0.65:.0f}">{name}</text>')
        for label, ms, colour in segs:
            w = ms * scale
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}">'
                f"<title>{label}: {ms:.1f} ms</title></rect>"
            )
            if w > 34:
                out.append(
                    f'<text x="{x + w / 2:.1f}" y="{y + bar_h * 0.65:.0f}" text-anchor="middle" '
                    f'fill="white">{ms:.0f}</text>'
                )
            x += w
        latency = report["latency_ms"]["median"]
        out.append(
            f'<text x="{left}" y="{y + bar_h + 14}" fill="#555">online latency {latency:.0f} ms, '
            f"{report['threads']} server threads, {report['images']} images, "
            f"agreement {100 * report['agreement']:.2f} %</text>"
        )
        y += bar_h + gap
    y += 10
    for label, colour in legend:
        out.append(f'<rect x="10" y="{y - 10}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="28" y="{y}">{label}</text>')
        y += 20
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="JSON files written by `hefun bench --json`")
    parser.add_argument("-o", "--out", required=True, help="SVG file to write")
    args = parser.parse_args()
    reports = []
    for path in args.reports:
        try:
            with open(path) as f:
                reports.append(json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"cannot read {path}: {e}")
    with open(args.out, "w") as f:
        f.write(render(reports))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

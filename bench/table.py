#!/usr/bin/env python3
"""Print bench/run's results (JSON lines) as tables.

usage: table.py RESULTS.jsonl [--note TEXT]

One line per (setup, load): latency percentiles, successful req/s, errors, the
proxies' CPU time per 1000 requests and their peak RSS. Then the latency each setup
adds to `direct`, and each remora setup's ratio to the HAProxy pair doing the same
job (`remora` / `haproxy`, `remora-mtls` / `haproxy-mtls`).
"""
import argparse
import json
import sys

BASELINE = "direct"
REFERENCE = "haproxy"


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def cpu_ms_per_1k(row):
    """CPU milliseconds the proxies used per 1000 requests (all of them summed)."""
    requests = row["load"]["requests_all"]
    if not row["proxies"] or requests == 0:
        return None
    ticks = sum(row["cpu_ticks"])
    return ticks / row["clk_tck"] * 1000.0 / requests * 1000.0


def cpu_text(row):
    total = cpu_ms_per_1k(row)
    if total is None:
        return "-"
    requests = row["load"]["requests_all"]
    parts = [
        f"{label} {t / row['clk_tck'] * 1e6 / requests:.0f}"
        for label, t in zip(row["proxies"], row["cpu_ticks"])
    ]
    return f"{total:.0f} ({' + '.join(parts)})"


def rss_mb(row):
    return [kb / 1024.0 for kb in row["peak_rss_kb"]]


def rss_text(row):
    if not row["proxies"]:
        return "-"
    return " / ".join(f"{label} {mb:.1f}" for label, mb in zip(row["proxies"], rss_mb(row)))


def table(headers, lines):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *lines)]
    out = []
    for i, line in enumerate([headers] + lines):
        cells = [str(c).ljust(w) if j < 2 else str(c).rjust(w) for j, (c, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return "n/a"
    return f"{a / b:.2f}x"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    rows = load(args.results)
    if not rows:
        sys.exit("no results")
    by_key = {(r["setup"], r["phase"]): r for r in rows}

    print()
    if args.note:
        print(args.note)
        print()
    print(table(
        ["setup", "load", "p50 ms", "p99 ms", "p99.9 ms", "req/s", "errors",
         "CPU ms / 1000 req", "peak RSS MB"],
        [[r["setup"], r["phase"], f"{r['load']['p50_ms']:.3f}", f"{r['load']['p99_ms']:.3f}",
          f"{r['load']['p999_ms']:.3f}", f"{r['load']['rps']:.0f}", r["load"]["errors"],
          cpu_text(r), rss_text(r)] for r in rows],
    ))

    added = []
    for r in rows:
        base = by_key.get((BASELINE, r["phase"]))
        if r["setup"] == BASELINE or base is None:
            continue
        lr, lb = r["load"], base["load"]
        added.append([
            r["setup"], r["phase"],
            f"{lr['p50_ms'] - lb['p50_ms']:+.3f}", f"{lr['p99_ms'] - lb['p99_ms']:+.3f}",
            f"{lr['p999_ms'] - lb['p999_ms']:+.3f}", ratio(lr["rps"], lb["rps"]),
        ])
    if added:
        print()
        print(f"Against {BASELINE} (latency added, ms; req/s as a fraction of {BASELINE}'s):")
        print(table(["setup", "load", "+p50", "+p99", "+p99.9", "req/s"], added))

    versus = []
    for r in rows:
        # Each remora setup is compared with the HAProxy pair doing the same job:
        # remora -> haproxy, remora-mtls -> haproxy-mtls.
        if not r["setup"].startswith("remora"):
            continue
        ref_name = REFERENCE + r["setup"][len("remora"):]
        ref = by_key.get((ref_name, r["phase"]))
        base = by_key.get((BASELINE, r["phase"]))
        if ref is None:
            continue

        def added_ms(row, key):
            if base is None:
                return row["load"][key]
            return row["load"][key] - base["load"][key]

        versus.append([
            f"{r['setup']} / {ref_name}", r["phase"],
            ratio(added_ms(r, "p50_ms"), added_ms(ref, "p50_ms")),
            ratio(added_ms(r, "p99_ms"), added_ms(ref, "p99_ms")),
            ratio(added_ms(r, "p999_ms"), added_ms(ref, "p999_ms")),
            ratio(r["load"]["rps"], ref["load"]["rps"]),
            ratio(cpu_ms_per_1k(r), cpu_ms_per_1k(ref)),
            ratio(sum(rss_mb(r)), sum(rss_mb(ref))),
        ])
    if versus:
        print()
        print("Against the HAProxy pair doing the same job (below 1x is less "
              "latency added, CPU or memory; above 1x is more req/s):")
        print(table(["setup", "load", "added p50", "added p99", "added p99.9", "req/s",
                     "CPU / req", "peak RSS"], versus))
    print()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The opaque TCP results of bench/run --tcp as a table, with ratios against the
HAProxy pair measured in the same run.

usage: tcp_table.py RESULTS.jsonl
"""
import json
import sys


def main() -> None:
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    by = {(r["setup"], r["phase"]): r for r in rows}
    setups = list(dict.fromkeys(r["setup"] for r in rows))
    print("Opaque TCP through each pair (redis-benchmark), proxies' CPU summed:")
    print(f"{'setup':<17} {'phase':<6} {'ops/s':>9} {'MB/s':>8} {'CPU s':>7} "
          f"{'CPU ms/1k ops':>13} {'CPU s/GB':>9} {'peak RSS KiB':>14}")
    for s in setups:
        for phase in ("small", "bulk"):
            r = by.get((s, phase))
            if not r:
                continue
            ops = r["ops_per_s"]
            total_ops = r["operations"]
            mb_s = ops * r["value_bytes"] / 1e6
            gb = total_ops * r["value_bytes"] / 1e9
            per_k = r["cpu_s"] * 1000 / (total_ops / 1000) if total_ops else 0
            per_gb = r["cpu_s"] / gb if gb else 0
            rss = "/".join(str(x) for x in r["peak_rss_kb"]) or "-"
            # CPU per 1000 operations tells the small load, per GB the bulk one.
            per_k = f"{per_k:13.3f}" if phase == "small" else f"{'-':>13}"
            per_gb = f"{per_gb:9.2f}" if phase == "bulk" else f"{'-':>9}"
            print(f"{s:<17} {phase:<6} {ops:>9.0f} {mb_s:>8.1f} {r['cpu_s']:>7.2f} "
                  f"{per_k} {per_gb} {rss:>14}")
    base, ours = "tcp-haproxy-tls", "tcp-remora-mtls"
    print()
    for phase in ("small", "bulk"):
        b, o = by.get((base, phase)), by.get((ours, phase))
        if not (b and o):
            continue
        thr = o["ops_per_s"] / b["ops_per_s"]
        cpu_o = o["cpu_s"] / o["operations"]
        cpu_b = b["cpu_s"] / b["operations"]
        print(f"{phase}: remora/haproxy throughput x{thr:.2f}, CPU per operation "
              f"x{cpu_o / cpu_b:.2f} (lower is better)")
    print()


if __name__ == "__main__":
    main()

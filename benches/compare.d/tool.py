#!/usr/bin/env python3
"""Helpers for benches/compare (standard library only).

Subcommands:
  wrk FILE            parse wrk output -> key=value lines
  h2load FILE         parse h2load output -> key=value lines
  pct LOGFILE         p50/p99 and achieved rate from an h2load --log-file
  idle ...            open N keep-alive connections, one request each, hold them (RSS per conn,
                      and whether they still work after the hold)
  report RAW OUT      medians, ratios and the final table
"""

import argparse
import asyncio
import os
import re
import statistics
import sys
import time

UNITS_US = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0, "m": 60_000_000.0, "h": 3_600_000_000.0}


def dur_us(s):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", s.strip())
    return float(m.group(1)) * UNITS_US[m.group(2)] if m else float("nan")


def parse_wrk(path):
    text = open(path, errors="replace").read()
    out = {"rps": "nan", "requests": 0, "non2xx": 0, "errors": 0, "p50_us": "nan", "p99_us": "nan"}
    m = re.search(r"Requests/sec:\s*([0-9.]+)", text)
    if m:
        out["rps"] = m.group(1)
    m = re.search(r"(\d+) requests in ([0-9.]+\w+),", text)
    if m:
        out["requests"] = int(m.group(1))
        out["secs"] = dur_us(m.group(2)) / 1e6
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["errors"] = sum(int(x) for x in m.groups())
    for pct, key in (("50", "p50_us"), ("99", "p99_us")):
        m = re.search(r"^\s*" + pct + r"%\s+([0-9.]+\w+)\s*$", text, re.M)
        if m:
            out[key] = "%.1f" % dur_us(m.group(1))
    for k, v in out.items():
        print(f"{k}={v}")


def parse_h2load(path):
    """One h2load run, or several appended to one file (summed; rps = succeeded / summed time)."""
    text = open(path, errors="replace").read()
    out = {"rps": "nan", "requests": 0, "ok": 0, "failed": 0, "errored": 0, "timeout": 0, "s2xx": 0, "non2xx": 0, "data_bytes": 0, "runs": 0}
    secs = 0.0
    for m in re.finditer(r"finished in ([0-9.]+\w+), ([0-9.]+) req/s", text):
        secs += dur_us(m.group(1)) / 1e6
        out["runs"] += 1
    for m in re.finditer(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        text,
    ):
        g = [int(x) for x in m.groups()]
        for k, v in zip(("requests", "ok", "failed", "errored", "timeout"), (g[2], g[3], g[4], g[5], g[6])):
            out[k] += v
    for m in re.finditer(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text):
        out["s2xx"] += int(m.group(1))
        out["non2xx"] += sum(int(x) for x in m.groups()[1:])
    for m in re.finditer(r"traffic: .*, \S+ \((\d+)\) data", text):
        out["data_bytes"] += int(m.group(1))
    if out["runs"] == 1:
        out["rps"] = re.search(r"finished in [0-9.]+\w+, ([0-9.]+) req/s", text).group(1)
    elif secs > 0:
        out["rps"] = "%.2f" % (out["ok"] / secs)
    out["secs"] = "%.3f" % secs
    m = re.search(r"TLS Protocol: (\S+)", text)
    if m:
        out["tls"] = m.group(1)
    m = re.search(r"Application protocol: (\S+)", text)
    if m:
        out["proto"] = m.group(1)
    for k, v in out.items():
        print(f"{k}={v}")


def pct(path):
    durs, starts, ends, bad = [], [], [], 0
    for line in open(path):
        f = line.split("\t")
        if len(f) < 3:
            continue
        start, status, d = int(f[0]), int(f[1]), int(f[2])
        if not 200 <= status < 300:
            bad += 1
        durs.append(d)
        starts.append(start)
        ends.append(start + d)
    if not durs:
        print("p50_us=nan\np99_us=nan\nrate=nan\ncount=0\nbad=0")
        return
    durs.sort()
    q = lambda p: durs[min(len(durs) - 1, int(p * len(durs)))]
    span = (max(ends) - min(starts)) / 1e6
    print(f"p50_us={q(0.50)}\np99_us={q(0.99)}\nrate={len(durs) / span:.1f}\ncount={len(durs)}\nbad={bad}")


# ---------------------------------------------------------------------------------------------
# idle: N keep-alive connections, one request each, then held.


def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


async def one_request(reader, writer, host, path, timeout):
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if m:
        await asyncio.wait_for(reader.readexactly(int(m.group(1))), timeout)
    elif re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        while True:
            size = int((await asyncio.wait_for(reader.readline(), timeout)).split(b";")[0], 16)
            await asyncio.wait_for(reader.readexactly(size + 2), timeout)
            if size == 0:
                break
    if re.search(rb"(?im)^connection:\s*close", head):
        raise ConnectionError("server closed the connection")
    return 200 <= status < 300


async def idle_main(a):
    conns = []
    sem = asyncio.Semaphore(a.parallel)

    async def open_one():
        async with sem:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", a.port), 10)
            except Exception:
                return None
            try:
                ok = await one_request(r, w, a.host, a.path, 10)
            except Exception:
                ok = False
            conns.append((r, w))
            return ok

    pid_rss0 = rss_kb(a.pid) if a.pid else -1
    t0 = time.monotonic()
    results = await asyncio.gather(*(open_one() for _ in range(a.conns)))
    opened = sum(1 for x in results if x is not None)
    ok1 = sum(1 for x in results if x)
    t_open = time.monotonic() - t0
    await asyncio.sleep(a.settle)
    pid_rss1 = rss_kb(a.pid) if a.pid else -1
    print(f"opened={opened}\nok1={ok1}\nopen_secs={t_open:.2f}\nrss0_kb={pid_rss0}\nrss1_kb={pid_rss1}", flush=True)
    if a.hold > 0:
        await asyncio.sleep(a.hold)

        async def again(r, w):
            async with sem:
                try:
                    return await one_request(r, w, a.host, a.path, 10)
                except Exception:
                    return False

        res2 = await asyncio.gather(*(again(r, w) for r, w in conns))
        print(f"ok2={sum(1 for x in res2 if x)}", flush=True)
    for _, w in conns:
        w.close()


# ---------------------------------------------------------------------------------------------
# report


def fmt(v):
    if v != v:  # nan
        return "-"
    if v == int(v):
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def report(raw, out):
    order = []
    vals = {}
    notes = {}
    for line in open(raw):
        f = line.rstrip("\n").split("\t")
        if len(f) < 5:
            continue
        scen, metric, who, _round, val = f[:5]
        key = (scen, metric)
        if key not in vals:
            order.append(key)
            vals[key] = {}
        try:
            v = float(val)
        except ValueError:
            v = float("nan")
        if v == v:
            vals[key].setdefault(who, []).append(v)
        if len(f) > 5 and f[5]:
            notes[key] = f[5]
    who_cols = ["sluice", "nginx", "haproxy", "caddy"]
    header = ["scenario", "metric", *who_cols, "s/nginx", "s/haproxy", "s/caddy"]
    rows = []
    for key in order:
        med = {w: statistics.median(vals[key][w]) if vals[key].get(w) else float("nan") for w in who_cols}
        ratios = []
        for w in who_cols[1:]:
            s, o = med["sluice"], med[w]
            ratios.append(f"{s / o:.2f}" if s == s and o == o and o != 0 else "-")
        rows.append([key[0], key[1], *(fmt(med[w]) for w in who_cols), *ratios])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    line = lambda r: "| " + " | ".join(str(c).ljust(widths[i]) if i < 2 else str(c).rjust(widths[i]) for i, c in enumerate(r)) + " |"
    lines.append(line(header))
    lines.append("|" + "|".join("-" * (w + 2) if i < 2 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|")
    for r in rows:
        lines.append(line(r))
    text = "\n".join(lines) + "\n"
    text += "\nMedians over rounds; ratios are sluice/other for the metric as shown (for req/s, MiB/s and\nhandshakes/s higher is better; for latency, CPU and memory lower is better); '-' = not measured.\n"
    for key, n in notes.items():
        text += f"note ({key[0]} / {key[1]}): {n}\n"
    open(out, "w").write(text)
    sys.stdout.write(text)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("wrk").add_argument("file")
    sub.add_parser("h2load").add_argument("file")
    sub.add_parser("pct").add_argument("file")
    i = sub.add_parser("idle")
    i.add_argument("--port", type=int, required=True)
    i.add_argument("--host", default="bench.local")
    i.add_argument("--path", default="/small")
    i.add_argument("--conns", type=int, default=10000)
    i.add_argument("--parallel", type=int, default=200)
    i.add_argument("--settle", type=float, default=1.0)
    i.add_argument("--hold", type=float, default=0.0)
    i.add_argument("--pid", type=int, default=0)
    r = sub.add_parser("report")
    r.add_argument("raw")
    r.add_argument("out")
    a = p.parse_args()
    if a.cmd == "wrk":
        parse_wrk(a.file)
    elif a.cmd == "h2load":
        parse_h2load(a.file)
    elif a.cmd == "pct":
        pct(a.file)
    elif a.cmd == "idle":
        asyncio.run(idle_main(a))
    elif a.cmd == "report":
        report(a.raw, a.out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""aiohttp client for scripts/bench-http-client: N tasks share one ClientSession with
TCPConnector(limit=N), each looping GET URL and reading the body.

    aiohttp_client.py URL INFLIGHT SECONDS

Same protocol as curl_multi.c: "START", the timed window, "END" once the loops drained, a
line on stdin, then "RESULT requests=.. errors=.. p50_ms=.. p99_ms=..".
"""
import asyncio
import sys
import time

import aiohttp


async def loop(session, url, end, lat, errs):
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            return
        try:
            async with session.get(url) as resp:
                await resp.read()
                ok = resp.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError):
            ok = False
        t = time.perf_counter()
        if t <= end:
            if ok:
                lat.append((t - t0) * 1e3)
            else:
                errs[0] += 1


async def main(url, n, seconds):
    lat, errs = [], [0]
    conn = aiohttp.TCPConnector(limit=n)
    async with aiohttp.ClientSession(connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=10)) as session:
        print("START", flush=True)
        end = time.perf_counter() + seconds
        await asyncio.gather(*(loop(session, url, end, lat, errs) for _ in range(n)))
        print("END", flush=True)
        sys.stdin.readline()
    lat.sort()
    pct = lambda q: lat[int(q * (len(lat) - 1))] if lat else 0
    print(f"RESULT requests={len(lat)} errors={errs[0]} p50_ms={pct(0.5):.3f} p99_ms={pct(0.99):.3f}",
          flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))

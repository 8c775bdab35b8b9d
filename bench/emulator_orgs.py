#!/usr/bin/env python3
"""Footprint of a many-org emulator: start-up, first login to every org, one query each.

Usage (from the repo root, after `cargo build --release -p weft-emulator`):
    python3 bench/emulator_orgs.py 1000 --accounts 20 --contacts 20 --leads 10 \
        --opportunities 10 --sites 5 --users 5
Arguments after the org count go to `weft-emulator` unchanged. Needs `requests`
(emulator/conformance/requirements.txt). Prints start-up time and RSS after each stage;
fails if any org's token is not bound to its org or any org counts another org's calls.
"""
import os, re, subprocess, sys, time
import requests

BIN = os.environ.get("WEFT_EMULATOR_BIN", "target/release/weft-emulator")
n = int(sys.argv[1])
t0 = time.time()
p = subprocess.Popen([BIN, "--orgs", str(n)] + sys.argv[2:], stdout=subprocess.PIPE, text=True)
base = None
for line in p.stdout:
    if line.startswith("WEFT_EMULATOR_URL="):
        base = line.strip().split("=", 1)[1]
    if line.startswith("WEFT_EMULATOR_TOKEN="):
        break
started = time.time() - t0


def rss_mib():
    status = open(f"/proc/{p.pid}/status").read()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) // 1024


try:
    print(f"start-up {started:.3f} s, RSS {rss_mib()} MiB")
    s = requests.Session()
    orgs = s.get(base + "/__admin/orgs").json()["orgs"]
    t = time.time()
    tokens = []
    for o in orgs:
        r = s.post(base + "/services/oauth2/token",
                   data={"grant_type": "client_credentials", "client_id": o["clientId"],
                         "client_secret": o["clientSecret"]})
        assert r.status_code == 200, r.text
        tok = r.json()["access_token"]
        assert tok.startswith(o["orgId"][:15] + "!"), (tok, o["orgId"])
        tokens.append(tok)
    dt = time.time() - t
    print(f"first login to each of {n} orgs (seeds it): {dt:.2f} s, "
          f"{dt / n * 1000:.2f} ms/org, RSS {rss_mib()} MiB")
    t = time.time()
    for tok in tokens:
        r = s.get(base + "/services/data/v60.0/query?q=SELECT+COUNT()+FROM+Account",
                  headers={"Authorization": "Bearer " + tok})
        assert r.status_code == 200, r.text
        assert r.headers["Sforce-Limit-Info"].startswith("api-usage=1/"), r.headers
    dt = time.time() - t
    print(f"one query per org: {dt / n * 1000:.2f} ms/org, each org at api-usage=1, "
          f"RSS {rss_mib()} MiB")
finally:
    p.terminate()

"""Reads a whole Bulk API 2.0 query the way many Python connectors do: the response headers
copied into a plain dict, so names are looked up exactly as the server spelled them. A
server that lower-cases `Sforce-Locator` ends this loop after the first page without an
error; this check fails instead. Exits non-zero on any mismatch."""

import csv
import io
import os
import sys
import time

import requests

BASE = os.environ["WEFT_URL"]
TOKEN = os.environ["WEFT_TOKEN"]
EXPECT = int(os.environ["WEFT_EXPECT_ROWS"])
API = f"{BASE}/services/data/v60.0"


def check(ok, what):
    if not ok:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def main():
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {TOKEN}"
    total = s.get(f"{API}/queryAll", params={"q": "SELECT COUNT() FROM Account"}).json()["totalSize"]
    check(total == EXPECT, f"org holds {total} Accounts")
    job = s.post(f"{API}/jobs/query", json={"operation": "queryAll", "query": "SELECT Id, Name FROM Account"}).json()
    for _ in range(600):
        state = s.get(f"{API}/jobs/query/{job['id']}").json()["state"]
        if state == "JobComplete":
            break
        time.sleep(0.05)
    check(state == "JobComplete", f"job state {state}")
    rows, pages, locator = 0, 0, None
    while True:
        params = {"locator": locator} if locator else {}
        r = s.get(f"{API}/jobs/query/{job['id']}/results", params=params)
        check(r.status_code == 200, f"results page {pages} status {r.status_code}")
        headers = dict(r.headers)  # plain dict: exact-case lookups from here on
        page_rows = sum(1 for _ in csv.DictReader(io.StringIO(r.text)))
        check(int(headers["Sforce-NumberOfRecords"]) == page_rows, f"page {pages}: {page_rows} rows")
        rows += page_rows
        pages += 1
        locator = headers.get("Sforce-Locator", "null")
        if locator == "null":
            break
    check(rows == total, f"read {rows} of {total} rows in {pages} pages")
    check(pages > 1, "more than one results page")


if __name__ == "__main__":
    main()

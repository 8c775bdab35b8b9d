"""Drives the emulator with simple-salesforce (a client nobody here wrote).

Env: WEFT_URL (https://127.0.0.1:PORT), WEFT_TOKEN, WEFT_CA (PEM of the emulator's CA).
Exits non-zero on the first mismatch.
"""

import csv
import io
import os
import sys

import requests
from simple_salesforce import Salesforce


def check(cond, msg):
    if not cond:
        print(f"FAIL: {msg}", file=sys.stderr)
        sys.exit(1)


def main():
    url, token, ca = os.environ["WEFT_URL"], os.environ["WEFT_TOKEN"], os.environ["WEFT_CA"]
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's `verify`; point
    # both at the emulator's CA so a machine-wide setting cannot hijack the check.
    os.environ["REQUESTS_CA_BUNDLE"] = ca
    os.environ.pop("CURL_CA_BUNDLE", None)
    session = requests.Session()
    session.verify = ca
    sf = Salesforce(instance_url=url, session_id=token, version="59.0", session=session)

    # Paginated REST query: more than one 2,000-record page.
    total = sf.query("SELECT COUNT() FROM Account")["totalSize"]
    check(total > 2000, f"need > 2000 accounts, got {total}")
    res = sf.query_all("SELECT Id, Name, Owner.Name FROM Account")
    check(res["totalSize"] == total, "totalSize")
    check(len(res["records"]) == total, f"query_all returned {len(res['records'])} of {total}")
    check(res["records"][0]["Owner"]["Name"], "parent relationship")
    ids = [r["Id"] for r in sf.query_all_iter("SELECT Id FROM Account WHERE Tier__c = 'Gold'")]
    check(len(ids) == len(set(ids)) and ids, "query_all_iter")
    check(sf.api_usage.get("api-usage") is not None, f"Sforce-Limit-Info parsed: {sf.api_usage}")

    # Describe.
    names = {o["name"] for o in sf.describe()["sobjects"]}
    check({"Account", "Contact", "Lead", "Opportunity", "User"} <= names, "describe global")
    fields = {f["name"]: f for f in sf.Account.describe()["fields"]}
    check(fields["External_Id__c"]["externalId"], "externalId in describe")

    # Upsert by external id (insert then update), read back by external id.
    status = sf.Account.upsert("External_Id__c/PY-1", {"Name": "Py One"})
    check(status == 201, f"upsert insert status {status}")
    status = sf.Account.upsert("External_Id__c/PY-1", {"Name": "Py One Updated"})
    check(status in (200, 204), f"upsert update status {status}")
    rec = sf.Account.get_by_custom_id("External_Id__c", "PY-1")
    check(rec["Name"] == "Py One Updated", "get_by_custom_id")
    created = sf.Contact.create({"LastName": "Py", "Email": "py@example.com"})
    check(created["success"], "create")
    sf.Contact.update(created["id"], {"Title": "Tester"})
    check(sf.Contact.get(created["id"])["Title"] == "Tester", "update")
    sf.Contact.delete(created["id"])

    # Bulk 2.0 query: several pages, a header on each, locator "null" at the end.
    total = sf.query("SELECT COUNT() FROM Account")["totalSize"]
    rows = 0
    pages = 0
    for page in sf.bulk2.Account.query("SELECT Id, Name, Description FROM Account", max_records=1000):
        pages += 1
        reader = csv.DictReader(io.StringIO(page))
        check(reader.fieldnames == ["Id", "Name", "Description"], f"bulk header {reader.fieldnames}")
        rows += sum(1 for _ in reader)
    check(rows == total + 0, f"bulk rows {rows} vs {total}")
    check(pages == -(-total // 1000), f"bulk pages {pages}")

    # Bulk 2.0 ingest (upsert) through the client's own job handling.
    results = sf.bulk2.Account.upsert(
        records=[{"External_Id__c": f"PYB-{i}", "Name": f"Bulk {i}"} for i in range(25)],
        external_id_field="External_Id__c",
    )
    processed = sum(int(r["numberRecordsProcessed"]) for r in results)
    failed = sum(int(r["numberRecordsFailed"]) for r in results)
    check(processed == 25 and failed == 0, f"bulk upsert {results}")
    check(sf.query("SELECT COUNT() FROM Account WHERE External_Id__c LIKE 'PYB-%'")["totalSize"] == 25, "bulk upsert visible")
    print("simple-salesforce conformance: ok")


if __name__ == "__main__":
    main()

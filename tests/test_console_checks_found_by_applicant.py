"""A search by person finds the console checks they applied for, whoever holds the licence.

Session 21 made ``audit search`` by holder also match ``extra.applicant`` (the API's item check records
the applicant apart from the licence's holder). The console's records carried no applicant: a clerk's
check of a licence held by someone else -- a child's, a spouse's, a company's as its legal
representative -- was found only by the holder's search, never by the applicant's. Each console record
now carries the case's applicant as its HMAC (never in clear), as the API's item check does.
"""

from __future__ import annotations

from gateway.audit import AuditQuery
from gateway.audit_wiring import AUDIT
from tests.test_console_fetch_from_issuing_region import ITEM, fetch, trail, window  # noqa: F401  (fixture)
from tests.test_console_http import add, open_case, sign_in
from tests.test_query_federated import citizen, regions_up  # noqa: F401  (fixture)
from tests.test_console_second_review import issue


async def test_a_clerks_check_of_another_persons_licence_is_found_by_the_applicants_search(world, window) -> None:
    applicant, other = citizen(seq=731), citizen(seq=732)
    client = await window()
    audit = client.server.app[AUDIT]
    csrf = await sign_in(client)
    case = await open_case(client, csrf, applicant, ITEM)
    await add(client, csrf, case["id"], issue(world, "id_card", "valid", other).body())   # someone else's card
    [check] = [r for r in trail(client) if r["kind"] == "check"]
    mine, theirs = audit.holder("111", applicant), audit.holder("111", other)
    assert check["holder_hmac"] == theirs and check["extra"]["applicant"] == mine
    assert applicant not in str(check) and other not in str(check)   # both only as keyed hashes
    found = await audit.sink.search(AuditQuery(holder_hmac=mine))
    assert [r.body["request_id"] for r in found] == [check["request_id"]]
    assert [r.body["request_id"] for r in await audit.sink.search(AuditQuery(holder_hmac=theirs))] == \
        [check["request_id"]]
    # control: a third person's search finds nothing
    assert await audit.sink.search(AuditQuery(holder_hmac=audit.holder("111", citizen(seq=733)))) == []


async def test_a_fetched_licences_record_names_the_applicant_too(world, window, regions_up) -> None:  # noqa: F811
    applicant = citizen(seq=734)
    client = await window()
    audit = client.server.app[AUDIT]
    csrf = await sign_in(client)
    case = await open_case(client, csrf, applicant, ITEM)
    view = await fetch(client, csrf, case["id"])
    assert view["fetch"]["added"] == 2
    checks = [r for r in trail(client) if r["kind"] == "check"]
    assert [(r["extra"]["source"], r["extra"]["applicant"]) for r in checks] == \
        [("console.fetch", audit.holder("111", applicant))] * 2

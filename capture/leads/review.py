"""A page's review rules: the verdict on a new lead (countries, required fields,
blocked and disposable domains, then manual or automatic review), for an opt-in and
an imported row alike."""

from typing import Any

from disposable_email_domains import blocklist as DISPOSABLE_DOMAINS

from capture import domains
from capture.models import Page


def review_verdict(page: Page, email: str, name: str = "", country: str | None = None,
                   fields: dict[str, Any] | None = None) -> tuple[str, str]:
    """Apply the page's rules: ('rejected', reason) on the first failed rule, else
    'pending' for manual review or 'approved'."""
    rules = page.rules or {}
    domain = email.rsplit("@", 1)[-1]
    countries = rules.get("countries") or []
    if countries and country not in countries:
        reason = f"country {country} not accepted" if country else "country missing"
        return "rejected", reason
    labels = {f["name"]: f["label"] for f in page.fields}
    values = {"email": email, "name": name, **(fields or {})}
    if country:
        values.update({f["name"]: country for f in page.fields if f["type"] == "country"})
    for required in rules.get("required") or []:
        if not values.get(required):
            return "rejected", f"missing {labels.get(required, required)}"
    if _is_blocked(domain, rules.get("block_domains") or []):
        return "rejected", f"domain {domain} is blocked"
    if rules.get("block_disposable") and _is_disposable(domain):
        return "rejected", f"disposable address ({domain})"
    return ("pending", "") if page.review == "manual" else ("approved", "")


def _is_blocked(domain: str, blocked_domains: list[str]) -> bool:
    """True when the domain or a parent domain is blocked. Both are compared in
    Unicode: a rule written `münchen.de` or `xn--mnchen-3ya.de` blocks the address
    in either form."""
    if not blocked_domains:
        return False
    mine = domains.comparable(domain)
    for rule in blocked_domains:
        blocked = domains.comparable(rule)
        if mine == blocked or mine.endswith("." + blocked):
            return True
    return False


def _is_disposable(domain: str) -> bool:
    """True when the domain or a parent domain is on the disposable list, in its
    Unicode or its ASCII (xn--) form: the list holds international domains in
    the ASCII form, addresses are stored in the Unicode one."""
    for form in domains.both_forms(domain):
        labels = form.split(".")
        if any(".".join(labels[i:]) in DISPOSABLE_DOMAINS for i in range(len(labels) - 1)):
            return True
    return False

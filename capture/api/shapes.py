"""What the API answers with: leads, events, upgrades and metrics as JSON objects.

Times are ISO 8601 in UTC with a Z; money is a decimal string ("19.90") so no client
rounds it through a float; a lead is known by its public ref, never its row id.
"""

from datetime import datetime
from typing import Any

from capture.numbers.metrics import Numbers
from capture.numbers.variants import VariantNumbers
from capture.models import ATTRIBUTION_KEYS, Event, Lead, Upgrade

# The Numbers values given as they are (counts) and as decimal strings (money).
COUNTS = ("visitors", "leads", "optins", "imported", "duplicates", "approved", "rejected",
          "pending", "confirmed", "delivered", "opened", "clicked", "opens_raw",
          "clicks_raw", "unsubscribes", "bounces", "complaints", "upgrades")
RATES = ("conversion_rate", "approval_rate", "open_rate", "click_rate", "bounce_rate",
         "complaint_rate", "roi")
MONEY = ("payout", "upgrade_revenue", "revenue", "spend", "profit")
# Money that is null without a denominator.
MONEY_OR_NULL = ("cost_per_lead", "cost_per_approved_lead")


def iso(moment: datetime | None) -> str | None:
    """A stored (naive UTC) time as ISO 8601 with Z."""
    return None if moment is None else moment.isoformat() + "Z"


def lead_json(lead: Lead, page_slug: str | None, referred_by: str | None,
              tags: list[str], optins: list[dict[str, Any]]) -> dict[str, Any]:
    """One lead. `page_slug`, `referred_by` (the referrer's public ref), its tag
    names and its opt-ins (`capture.leads.optins.data`, the first one first) are
    passed in, so a list of leads costs three queries, not five per lead."""
    return {
        "public_ref": lead.public_ref,
        "email": lead.email,
        "name": lead.name,
        "country": lead.country,
        "fields": lead.fields or {},
        "page": page_slug,
        "review": lead.review,
        "review_reason": lead.review_reason,
        "reviewed_at": iso(lead.reviewed_at),
        "subscription": lead.subscription,
        "consent_text": lead.consent_text,
        "consent_at": iso(lead.consent_at),
        "confirmed_at": iso(lead.confirmed_at),
        "created_at": iso(lead.created_at),
        "attribution": {
            **{key: getattr(lead, key) for key in ATTRIBUTION_KEYS},
            "referrer": lead.referrer,
            "landing_url": lead.landing_url,
        },
        "referred_by": referred_by,
        "tags": tags,
        "optins": optins,
    }


def event_json(event: Event) -> dict[str, Any]:
    """One entry of a lead's timeline."""
    return {"kind": event.kind, "created_at": iso(event.created_at),
            "machine": event.machine, "data": event.data or {}}


def upgrade_json(upgrade: Upgrade, lead_ref: str) -> dict[str, Any]:
    """One recorded upgrade."""
    return {"txn": upgrade.txn, "lead": lead_ref, "amount": f"{upgrade.amount:.2f}",
            "currency": upgrade.currency, "source": upgrade.source,
            "created_at": iso(upgrade.created_at)}


def numbers_json(numbers: Numbers) -> dict[str, Any]:
    """The metrics of one group: counts, rates (0–1, null without a denominator) and
    money as decimal strings."""
    values: dict[str, Any] = {name: int(getattr(numbers, name)) for name in COUNTS}
    values.update({name: getattr(numbers, name) for name in RATES})
    values.update({name: f"{getattr(numbers, name):.2f}" for name in MONEY})
    values.update({name: None if getattr(numbers, name) is None
                   else f"{getattr(numbers, name):.2f}" for name in MONEY_OR_NULL})
    per_visitor = numbers.earnings_per_visitor
    values["earnings_per_visitor"] = None if per_visitor is None else f"{per_visitor:.4f}"
    return values



def variant_json(numbers: VariantNumbers) -> dict[str, Any]:
    """One variant of a page test (`by=variant`): its state and share of new visitors,
    counts, rates, money, and the probability that it is the best on earnings per
    visitor (null when it cannot be told)."""
    per_visitor = numbers.earnings_per_visitor
    return {
        "group": numbers.key, "state": numbers.state, "share": numbers.share,
        **{name: getattr(numbers, name) for name in (
            "visitors", "leads", "approved", "rejected", "pending", "conversion_rate",
            "approval_rate")},
        **{name: f"{getattr(numbers, name):.2f}" for name in (
            "payout", "upgrade_revenue", "revenue")},
        "earnings_per_visitor": None if per_visitor is None else f"{per_visitor:.4f}",
        "probability_best": numbers.probability_best,
        "few_leads": numbers.few_leads,
    }

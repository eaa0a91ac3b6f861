"""Prices: loyalty discounts, sales tax and shipping, all rounded to cents."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
TIER_DISCOUNTS = {"bronze": Decimal("0.00"), "silver": Decimal("0.05"), "gold": Decimal("0.10")}
TAX_RATES = {"EU": Decimal("0.21"), "UK": Decimal("0.20"), "US": Decimal("0.07")}
SHIPPING_PER_KG = {"EU": Decimal("1.20"), "UK": Decimal("1.50"), "US": Decimal("2.10")}
FREE_SHIPPING_FROM = Decimal("100.00")


def round_cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def apply_discount(amount: Decimal, tier: str) -> Decimal:
    """`amount` less the loyalty discount of a customer `tier`."""
    try:
        rate = TIER_DISCOUNTS[tier]
    except KeyError:
        raise ValueError(f"unknown customer tier {tier!r}") from None
    return round_cents(amount * (1 - rate))


def tax_for(amount: Decimal, region: str) -> Decimal:
    """Sales tax due on `amount` in `region`."""
    return round_cents(amount * TAX_RATES[region])


def shipping_cost(weight_kg: Decimal, region: str, order_value: Decimal) -> Decimal:
    """Shipping for a parcel; free from `FREE_SHIPPING_FROM` upwards."""
    if order_value >= FREE_SHIPPING_FROM:
        return Decimal("0.00")
    return round_cents(weight_kg * SHIPPING_PER_KG[region])

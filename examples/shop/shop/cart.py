"""A customer's shopping cart, priced with the rules in `shop.pricing`."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from shop import pricing
from shop.models import Customer, LineItem, Product


@dataclass
class Cart:
    customer: Customer
    items: list[LineItem] = field(default_factory=list)

    def subtotal(self) -> Decimal:
        """Sum of the line items before any discount."""
        return sum((item.subtotal for item in self.items), Decimal("0"))

    def discounted_subtotal(self) -> Decimal:
        """The subtotal less the customer's loyalty discount."""

    def add(self, product: Product, quantity: int = 1) -> None:
        if quantity < 1:
            raise ValueError(f"quantity must be positive, got {quantity}")
        for item in self.items:
            if item.product.sku == product.sku:
                item.quantity += quantity
                return
        self.items.append(LineItem(product, quantity))

    def weight_kg(self) -> Decimal:
        return sum((item.weight_kg for item in self.items), Decimal("0"))

    def total(self) -> Decimal:
        """What the customer pays: discounted goods, tax and shipping."""
        goods = self.discounted_subtotal()
        region = self.customer.region
        shipping = pricing.shipping_cost(self.weight_kg(), region, goods)
        return pricing.round_cents(goods + pricing.tax_for(goods, region) + shipping)

"""Domain records shared by the cart, pricing and inventory modules."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price: Decimal
    weight_kg: Decimal


@dataclass(frozen=True)
class Customer:
    id: int
    name: str
    tier: str  # "bronze", "silver" or "gold"
    region: str  # "EU", "UK" or "US"


@dataclass
class LineItem:
    product: Product
    quantity: int

    @property
    def subtotal(self) -> Decimal:
        return self.product.price * self.quantity

    @property
    def weight_kg(self) -> Decimal:
        return self.product.weight_kg * self.quantity

"""Stock levels and reservations for checkout."""

from __future__ import annotations

from collections import Counter

from shop.models import LineItem


class OutOfStock(Exception):
    def __init__(self, sku: str, wanted: int, available: int) -> None:
        super().__init__(f"{sku}: wanted {wanted}, only {available} in stock")
        self.sku = sku


class Inventory:
    def __init__(self, stock: dict[str, int]) -> None:
        self._stock = Counter(stock)

    def available(self, sku: str) -> int:
        return self._stock[sku]

    def reserve(self, items: list[LineItem]) -> None:
        """Take the items out of stock, all or nothing."""
        for item in items:
            if self._stock[item.product.sku] < item.quantity:
                raise OutOfStock(item.product.sku, item.quantity, self._stock[item.product.sku])
        for item in items:
            self._stock[item.product.sku] -= item.quantity

    def release(self, items: list[LineItem]) -> None:
        for item in items:
            self._stock[item.product.sku] += item.quantity

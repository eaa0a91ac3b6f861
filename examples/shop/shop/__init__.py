"""A small web-shop core: products, carts, pricing and stock."""

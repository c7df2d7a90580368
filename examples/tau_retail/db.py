"""The retail mock database: users, orders and products, held in memory.

Each task needs its own database, and the published one is 2.3 MB of JSON: copying all of it
per task would cost more than running the task. So a :class:`RetailDB` shares the entities
it has not changed with the database it was copied from, and a tool copies an entity (deeply)
the first time it changes it (:meth:`RetailDB.writable_order` and friends). Two databases
then compare in time proportional to what changed, since ``==`` on an entity shared by both
answers at once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.tau_retail.corpus import read_json

__all__ = ["Entity", "RetailDB", "json_copy"]

Entity = dict[str, Any]
"""A user, an order or a product, as the published JSON has it."""


def json_copy(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, scalars); faster than ``copy.deepcopy``."""
    if type(value) is dict:
        return {key: json_copy(item) for key, item in value.items()}
    if type(value) is list:
        return [json_copy(item) for item in value]
    return value


@dataclass(eq=False)
class RetailDB:
    """The store's data: ``users``, ``orders`` and ``products``, each a dict keyed by id.

    Change an entity only through :meth:`writable_user`, :meth:`writable_order` or
    :meth:`writable_product`: they give this database its own copy first, so the database it
    was copied from (often the pristine one every task starts from) stays as it was.
    """

    users: dict[str, Entity]
    orders: dict[str, Entity]
    products: dict[str, Entity]
    _owned: set[tuple[str, str]] = field(default_factory=set, repr=False)

    @classmethod
    def load(cls, corpus: Path | str | None = None) -> RetailDB:
        """The published mock database, read from the corpus (see :mod:`.corpus`)."""
        return cls(
            users=read_json(corpus, "users.json"),
            orders=read_json(corpus, "orders.json"),
            products=read_json(corpus, "products.json"),
        )

    def fresh(self) -> RetailDB:
        """A database of its own for one task, equal to this one; changing it leaves this
        one as it is."""
        return RetailDB(
            users=dict(self.users), orders=dict(self.orders), products=dict(self.products)
        )

    def writable_user(self, user_id: str) -> Entity:
        """The user, copied for this database if it was shared; ``KeyError`` if unknown."""
        return self._writable("users", self.users, user_id)

    def writable_order(self, order_id: str) -> Entity:
        """The order, copied for this database if it was shared; ``KeyError`` if unknown."""
        return self._writable("orders", self.orders, order_id)

    def writable_product(self, product_id: str) -> Entity:
        """The product, copied for this database if it was shared; ``KeyError`` if unknown."""
        return self._writable("products", self.products, product_id)

    def _writable(self, table: str, rows: dict[str, Entity], key: str) -> Entity:
        row = rows[key]
        if (table, key) not in self._owned:
            row = json_copy(row)
            rows[key] = row
            self._owned.add((table, key))
        return row

    def as_json(self) -> dict[str, dict[str, Entity]]:
        """The whole database as JSON data (shared with this object: do not change it)."""
        return {"users": self.users, "orders": self.orders, "products": self.products}

    def digest(self) -> str:
        """A canonical hash of the whole database (SHA-256 of its sorted-key JSON)."""
        text = json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def same_state(self, other: RetailDB) -> bool:
        """Whether both databases hold the same data (deep equality)."""
        return (
            self.orders == other.orders
            and self.users == other.users
            and self.products == other.products
        )

    def differences(self, other: RetailDB) -> list[str]:
        """Which entities differ from ``other``'s, as ``"orders/#W123"`` (for reports)."""
        found = []
        for table, mine in self.as_json().items():
            theirs = other.as_json()[table]
            for key in sorted(mine.keys() | theirs.keys()):
                if mine.get(key) != theirs.get(key):
                    found.append(f"{table}/{key}")
        return found

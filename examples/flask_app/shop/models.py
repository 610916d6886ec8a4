"""The shop's SQLAlchemy models: the demo schema of sync_pipeline_devtools/demo.py.

The application writes through them, and the sync spec is derived from them
(`source.model: "shop.models:Product"` in sync.yaml beside this package): the
table, key, `updated_at` (the one column with `onupdate`) and each relationship's
join come from here, so a model and its index cannot disagree by hand.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Integer, MetaData, Numeric, Table, Text, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    metadata = MetaData(schema="sync_pipeline_demo")  # the demo's own schema


class Category(Base):
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    name_zh: Mapped[str] = mapped_column(Text)


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(Text)


product_tags = Table(
    "product_tags",
    Base.metadata,
    Column("product_id", BigInteger, ForeignKey("products.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", Integer, ForeignKey("tags.id"), primary_key=True),
)


class Review(Base):
    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    rating: Mapped[int] = mapped_column(Integer)
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    sku: Mapped[str] = mapped_column(Text, unique=True)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    price: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    stock: Mapped[int | None] = mapped_column(Integer)
    rating: Mapped[float | None]
    keywords: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    discontinued: Mapped[bool] = mapped_column(default=False)
    # the demo table has no column defaults: the ORM supplies them. Every UPDATE moves
    # updated_at (the sync's window and version column, found by its onupdate); now() is the
    # transaction's start, so a long transaction commits "in the past": the spec's `lookback`
    # re-reads for that.
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), insert_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), insert_default=func.now(), onupdate=func.now()
    )
    # soft delete: the spec's `soft_delete: deleted_at` turns it into a delete in the index
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    category: Mapped[Category | None] = relationship(lazy="joined")
    tags: Mapped[list[Tag]] = relationship(secondary=product_tags)
    reviews: Mapped[list[Review]] = relationship()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sku": self.sku,
            "name": self.name,
            "description": self.description,
            "category": self.category.name if self.category else None,
            "price": str(self.price) if self.price is not None else None,
            "stock": self.stock,
            "rating": self.rating,
            "keywords": self.keywords,
            "attributes": self.attributes,
            "discontinued": self.discontinued,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "deleted_at": self.deleted_at.isoformat() if self.deleted_at else None,
        }

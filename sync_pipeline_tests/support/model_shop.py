"""SQLAlchemy models the model-spec tests derive specs from (test_model_specs.py).

No schema of their own: each test creates the tables in a throwaway schema
(`schema_translate_map`) and names it in the spec (`source.schema`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    Table,
    Text,
    and_,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Department(Base):
    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)


class Category(Base):
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))

    department: Mapped[Department] = relationship()


line_labels = Table(
    "line_labels",
    Base.metadata,
    Column("order_id", Integer, primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("label_id", Integer, ForeignKey("labels.id"), primary_key=True),
    ForeignKeyConstraint(["order_id", "line_no"], ["order_lines.order_id", "order_lines.line_no"]),
)


class Label(Base):
    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(Integer)
    line_no: Mapped[int] = mapped_column(Integer)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    __table_args__ = (
        ForeignKeyConstraint(["order_id", "line_no"], ["order_lines.order_id", "order_lines.line_no"]),
    )


class OrderLine(Base):
    """A composite key, a depth-2 relation and a many-to-many through a join table keyed by it."""

    __tablename__ = "order_lines"

    order_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=func.now())
    changed: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=func.now(), onupdate=func.now()
    )

    category: Mapped[Category] = relationship()
    labels: Mapped[list[Label]] = relationship(secondary=line_labels)
    # a join no `on` can say: more than equal columns
    pinned_notes: Mapped[list[Note]] = relationship(
        primaryjoin=lambda: and_(
            Note.order_id == OrderLine.order_id, Note.line_no == OrderLine.line_no, Note.pinned.is_(True)
        ),
        viewonly=True,
    )


class Unstamped(Base):
    """No column with onupdate: the spec must name updated_at."""

    __tablename__ = "unstamped"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    touched: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class NotMapped:
    """A plain class: no mapper."""

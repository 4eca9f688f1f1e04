"""Model factories used by several test modules (each test gets fresh classes)."""

from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from sqlaudit.decorators import track_table


def readme_models(Base: Any) -> tuple[type, type]:
    """The User and Customer models of the original sqlaudit README."""

    class User(Base):
        __tablename__ = "users"
        user_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)

    @track_table(tracked_fields=["name", "email", "user_id"], table_label="Customer")
    class Customer(Base):
        __tablename__ = "customers"
        customer_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
        name: Mapped[str] = mapped_column(String)
        email: Mapped[Optional[str]] = mapped_column(String)
        user_id: Mapped[int] = mapped_column(ForeignKey("users.user_id"), nullable=False)
        notes: Mapped[Optional[str]] = mapped_column(String)  # not tracked

    return User, Customer

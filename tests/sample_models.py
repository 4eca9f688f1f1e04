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


def polymorphic_models(Base: Any) -> tuple[type, type, type]:
    """The original's polymorphic example: a Customer that is a joined-table subclass of
    Party, tracking ``name`` (a Party column) and its own ``email``; Employee is another
    subclass, untracked."""

    class Party(Base):
        __tablename__ = "parties"
        party_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
        name: Mapped[str] = mapped_column(String)
        phone: Mapped[Optional[str]] = mapped_column(String)  # tracked by nobody
        kind: Mapped[str] = mapped_column(String)
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "party"}

    @track_table(tracked_fields=["name", "email"], table_label="Customer")
    class Customer(Party):
        __tablename__ = "customers"
        party_id: Mapped[int] = mapped_column(ForeignKey("parties.party_id"), primary_key=True)
        email: Mapped[Optional[str]] = mapped_column(String)
        __mapper_args__ = {"polymorphic_identity": "customer"}

    class Employee(Party):
        __tablename__ = "employees"
        party_id: Mapped[int] = mapped_column(ForeignKey("parties.party_id"), primary_key=True)
        badge: Mapped[Optional[str]] = mapped_column(String)
        __mapper_args__ = {"polymorphic_identity": "employee"}

    return Party, Customer, Employee

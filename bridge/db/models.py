"""The core's tables. Connector-specific data goes in `metadata` JSON or the connector's own tables.

Changing a model means adding an Alembic migration under `alembic/versions/`; the migration
test compares the migrated schema with these models, so forgetting one fails CI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


# SQLite only auto-increments INTEGER PRIMARY KEY, PostgreSQL wants BIGINT for growth.
BigID = BigInteger().with_variant(Integer(), "sqlite")


class Portal(Base):
    """A Matrix room bridged to one remote room (channel, MUC, DM)."""

    __tablename__ = "portal"
    __table_args__ = (UniqueConstraint("network", "remote_id", "receiver"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    network: Mapped[str] = mapped_column(String(64))
    remote_id: Mapped[str] = mapped_column(String(255))  # normalised (case-folded) remote id
    # For a DM: the Matrix user whose private chat this is; "" for channels, which are shared.
    receiver: Mapped[str] = mapped_column(String(255), default="")
    room_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="channel")  # channel | dm
    name: Mapped[str | None] = mapped_column(Text)
    topic: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Ghost(Base):
    """A Matrix user standing for a remote user."""

    __tablename__ = "ghost"
    __table_args__ = (UniqueConstraint("network", "remote_id"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    network: Mapped[str] = mapped_column(String(64))
    remote_id: Mapped[str] = mapped_column(String(255))
    mxid: Mapped[str] = mapped_column(String(255), unique=True)
    displayname: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)


class MatrixUser(Base):
    """A Matrix user the bridge knows: their latest control room (for notices) and preferences."""

    __tablename__ = "matrix_user"

    mxid: Mapped[str] = mapped_column(String(255), primary_key=True)
    control_room: Mapped[str | None] = mapped_column(String(255))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ControlRoom(Base):
    """A room where the bot takes commands: a DM a permitted user invited it to."""

    __tablename__ = "control_room"

    room_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    mxid: Mapped[str] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Login(Base):
    """One Matrix user's account/connection on one network (an IRC puppet)."""

    __tablename__ = "login"
    __table_args__ = (UniqueConstraint("mxid", "network"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    mxid: Mapped[str] = mapped_column(String(255), ForeignKey("matrix_user.mxid", ondelete="CASCADE"))
    network: Mapped[str] = mapped_column(String(64))
    nick: Mapped[str | None] = mapped_column(String(255))
    username: Mapped[str | None] = mapped_column(String(255))
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary)  # AEAD ciphertext, never plain
    state: Mapped[str] = mapped_column(String(32), default="disconnected")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)


class Message(Base):
    """Maps a remote message (and part) to a Matrix event, both ways."""

    __tablename__ = "message"
    __table_args__ = (
        UniqueConstraint("portal_id", "remote_id", "part_id"),
        UniqueConstraint("event_id", "part_id"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    portal_id: Mapped[int] = mapped_column(BigID, ForeignKey("portal.id", ondelete="CASCADE"))
    remote_id: Mapped[str] = mapped_column(String(255))
    part_id: Mapped[str] = mapped_column(String(64), default="")
    event_id: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(255))
    timestamp: Mapped[int] = mapped_column(BigInteger)  # milliseconds since the epoch


class Reaction(Base):
    __tablename__ = "reaction"
    __table_args__ = (UniqueConstraint("portal_id", "remote_message_id", "sender", "key"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    portal_id: Mapped[int] = mapped_column(BigID, ForeignKey("portal.id", ondelete="CASCADE"))
    remote_message_id: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(255))
    event_id: Mapped[str] = mapped_column(String(255), unique=True)


class Outbox(Base):
    """A Matrix message accepted for a remote network but not yet delivered there."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    mxid: Mapped[str] = mapped_column(String(255), index=True)
    network: Mapped[str] = mapped_column(String(64))
    room_id: Mapped[str] = mapped_column(String(255))
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AppServiceTransaction(Base):
    """A transaction id the homeserver sent us; recorded before we answer 200."""

    __tablename__ = "as_txn"

    txn_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AppServiceEvent(Base):
    """An event from the homeserver, stored before we answer 200 and marked done once handled.

    De-duplication is by event id (a resend under a new transaction id is still seen), and
    events not yet done at a crash are handled again on start: nothing accepted is lost.
    """

    __tablename__ = "as_event"

    seq: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    room_id: Mapped[str] = mapped_column(String(255))
    txn_id: Mapped[str] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(Text)  # the event JSON as received, less any secret
    done: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

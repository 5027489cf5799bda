"""initial schema

Revision ID: 0001
Revises: 
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

def upgrade() -> None:

    op.create_table('as_event',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('room_id', sa.String(length=255), nullable=False),
    sa.Column('txn_id', sa.String(length=255), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('done', sa.Boolean(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('event_id')
    )
    with op.batch_alter_table('as_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_as_event_done'), ['done'], unique=False)

    op.create_table('as_txn',
    sa.Column('txn_id', sa.String(length=255), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('txn_id')
    )
    op.create_table('control_room',
    sa.Column('room_id', sa.String(length=255), nullable=False),
    sa.Column('mxid', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('room_id')
    )
    with op.batch_alter_table('control_room', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_control_room_mxid'), ['mxid'], unique=False)

    op.create_table('ghost',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('network', sa.String(length=64), nullable=False),
    sa.Column('remote_id', sa.String(length=255), nullable=False),
    sa.Column('mxid', sa.String(length=255), nullable=False),
    sa.Column('displayname', sa.Text(), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mxid'),
    sa.UniqueConstraint('network', 'remote_id')
    )
    op.create_table('matrix_user',
    sa.Column('mxid', sa.String(length=255), nullable=False),
    sa.Column('control_room', sa.String(length=255), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('mxid')
    )
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('mxid', sa.String(length=255), nullable=False),
    sa.Column('network', sa.String(length=64), nullable=False),
    sa.Column('room_id', sa.String(length=255), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_mxid'), ['mxid'], unique=False)

    op.create_table('portal',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('network', sa.String(length=64), nullable=False),
    sa.Column('remote_id', sa.String(length=255), nullable=False),
    sa.Column('receiver', sa.String(length=255), nullable=False),
    sa.Column('room_id', sa.String(length=255), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('topic', sa.Text(), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('network', 'remote_id', 'receiver'),
    sa.UniqueConstraint('room_id')
    )
    op.create_table('login',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('mxid', sa.String(length=255), nullable=False),
    sa.Column('network', sa.String(length=64), nullable=False),
    sa.Column('nick', sa.String(length=255), nullable=True),
    sa.Column('username', sa.String(length=255), nullable=True),
    sa.Column('credentials', sa.LargeBinary(), nullable=True),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['mxid'], ['matrix_user.mxid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mxid', 'network')
    )
    op.create_table('message',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('portal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('remote_id', sa.String(length=255), nullable=False),
    sa.Column('part_id', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('sender', sa.String(length=255), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['portal_id'], ['portal.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id', 'part_id'),
    sa.UniqueConstraint('portal_id', 'remote_id', 'part_id')
    )
    op.create_table('reaction',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('portal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('remote_message_id', sa.String(length=255), nullable=False),
    sa.Column('sender', sa.String(length=255), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['portal_id'], ['portal.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id'),
    sa.UniqueConstraint('portal_id', 'remote_message_id', 'sender', 'key')
    )

def downgrade() -> None:

    op.drop_table('reaction')
    op.drop_table('message')
    op.drop_table('login')
    op.drop_table('portal')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_mxid'))

    op.drop_table('outbox')
    op.drop_table('matrix_user')
    op.drop_table('ghost')
    with op.batch_alter_table('control_room', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_control_room_mxid'))

    op.drop_table('control_room')
    op.drop_table('as_txn')
    with op.batch_alter_table('as_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_as_event_done'))

    op.drop_table('as_event')


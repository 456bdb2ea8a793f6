"""queue workers heartbeat to the database

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'workers',
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=96), nullable=False),
        sa.Column('host', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('backend', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('threads', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('current_task', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('current_job_id', sa.Integer(), nullable=True),
        sa.Column('tasks_done', sa.Integer(), nullable=False),
        sa.Column('tasks_failed', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    op.create_index(op.f('ix_workers_heartbeat_at'), 'workers', ['heartbeat_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_workers_heartbeat_at'), table_name='workers')
    op.drop_table('workers')

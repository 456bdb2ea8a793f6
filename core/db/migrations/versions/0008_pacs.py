"""PACS nodes (credentials wrapped by the master key) and per-instance pull state

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        'pacs_nodes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', S(length=64), nullable=False),
        sa.Column('kind', S(length=16), nullable=False),
        sa.Column('url', S(length=512), nullable=False),
        sa.Column('auth', S(length=16), nullable=False),
        sa.Column('username', S(length=128), nullable=False),
        sa.Column('secret_wrapped', sa.LargeBinary(), nullable=True),
        sa.Column('secret_key_id', S(length=16), nullable=True),
        sa.Column('ae_title', S(length=16), nullable=False),
        sa.Column('host', S(length=255), nullable=False),
        sa.Column('port', sa.Integer(), nullable=False),
        sa.Column('calling_ae', S(length=16), nullable=False),
        sa.Column('timeout_s', sa.Float(), nullable=False),
        sa.Column('verify_tls', sa.Boolean(), nullable=False),
        sa.Column('from_env', sa.Boolean(), nullable=False),
        sa.Column('created_by', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_test_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_test_ok', sa.Boolean(), nullable=True),
        sa.Column('last_test_message', S(length=255), nullable=False),
        sa.ForeignKeyConstraint(['created_by'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_pacs_nodes_name'), 'pacs_nodes', ['name'], unique=True)
    op.create_table(
        'pacs_instances',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('node_id', sa.Integer(), nullable=False),
        sa.Column('sop_uid', S(length=64), nullable=False),
        sa.Column('series_uid', S(length=64), nullable=False),
        sa.Column('study_uid', S(length=64), nullable=False),
        sa.Column('status', S(length=16), nullable=False),
        sa.Column('reason', S(length=255), nullable=False),
        sa.Column('image_id', sa.Integer(), nullable=True),
        sa.Column('job_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['node_id'], ['pacs_nodes.id']),
        sa.ForeignKeyConstraint(['image_id'], ['images.id']),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('node_id', 'sop_uid'),
    )
    op.create_index(op.f('ix_pacs_instances_node_id'), 'pacs_instances', ['node_id'], unique=False)
    op.create_index(op.f('ix_pacs_instances_series_uid'), 'pacs_instances', ['series_uid'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_pacs_instances_series_uid'), table_name='pacs_instances')
    op.drop_index(op.f('ix_pacs_instances_node_id'), table_name='pacs_instances')
    op.drop_table('pacs_instances')
    op.drop_index(op.f('ix_pacs_nodes_name'), table_name='pacs_nodes')
    op.drop_table('pacs_nodes')

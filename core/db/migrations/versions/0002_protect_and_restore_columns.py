"""protect and restore columns

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pixel_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('protected_format', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column('dek_wrapped', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('dek_key_id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column('header_sealed', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('mask_mode', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column('deid_method', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.add_column(sa.Column('protected_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('protected_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_images_dek_key_id'), ['dek_key_id'], unique=False)
        batch_op.create_foreign_key('fk_images_protected_by_users', 'users', ['protected_by'], ['id'])

    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shape', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False, server_default=''))
        batch_op.alter_column('cls', new_column_name='kind', existing_type=sa.String(length=32), existing_nullable=False)



def downgrade() -> None:
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.drop_column('shape')
        batch_op.alter_column('kind', new_column_name='cls', existing_type=sa.String(length=32), existing_nullable=False)

    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_constraint('fk_images_protected_by_users', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_images_dek_key_id'))
        batch_op.drop_column('protected_at')
        batch_op.drop_column('protected_by')
        batch_op.drop_column('deid_method')
        batch_op.drop_column('mask_mode')
        batch_op.drop_column('header_sealed')
        batch_op.drop_column('dek_key_id')
        batch_op.drop_column('dek_wrapped')
        batch_op.drop_column('protected_format')
        batch_op.drop_column('pixel_sha256')


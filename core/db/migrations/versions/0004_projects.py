"""labelling projects; images belong to a project

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'projects',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('task_type', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('classes', sa.JSON(), nullable=True),
        sa.Column('model_task', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('created_by', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['created_by'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_projects_name'), 'projects', ['name'], unique=True)
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('project_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_images_project_id'), ['project_id'], unique=False)
        batch_op.create_foreign_key('fk_images_project_id', 'projects', ['project_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_constraint('fk_images_project_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_images_project_id'))
        batch_op.drop_column('project_id')
    op.drop_index(op.f('ix_projects_name'), table_name='projects')
    op.drop_table('projects')

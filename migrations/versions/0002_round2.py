"""latest_ablations: each model's ablations at its latest collected step

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

"Latest step" is defined once, here, for every query and chart that means it: per model and eval
set, the largest step among its ablation rows; a model and eval set whose rows carry no step (a
local folder, a `main`-only collection) keep those step-less rows.
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LATEST_ABLATIONS_VIEW = """
CREATE VIEW latest_ablations AS
WITH latest AS (
    SELECT model, eval_set, max(step) AS step FROM ablations GROUP BY model, eval_set
)
SELECT a.* FROM ablations a
JOIN latest l ON l.model = a.model AND l.eval_set = a.eval_set
             AND a.step IS NOT DISTINCT FROM l.step
"""


def upgrade() -> None:
    op.execute(LATEST_ABLATIONS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS latest_ablations")

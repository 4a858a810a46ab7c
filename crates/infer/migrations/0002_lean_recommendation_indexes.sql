-- A run's rows are read by rank (the UNIQUE (run_id, rank) index) and filtered by sector or action within the run:
-- the per-run secondary indexes cost more on every write than they save on reads of a few thousand rows.
DROP INDEX IF EXISTS recommendations_sector_idx;
DROP INDEX IF EXISTS recommendations_action_idx;

"""Pure functions on attention records: statistics, similarity, rollout, flow, diagnostics, evolution."""

-- Agents report events (Claude Code hooks) with a per-start token; only its hash is kept.
ALTER TABLE instances ADD COLUMN hook_token_hash TEXT;

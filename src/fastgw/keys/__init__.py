"""Gateway keys: their text and hash (token), what a key may do (record), budgets and spend
(budget), where they live (store: sqlite_store, redis_store), the per-worker view of a key
(principal), and the ``fastgw keys`` command (cli). The stage that uses them is stages/auth.py."""

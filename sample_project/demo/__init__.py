"""Demo app of the async-request sample: orders and reports owned by users, JWT auth."""

"""Orders: the aggregate and its state machine (model), the commands (handlers), the read model
(projection) and the queries the app and the CLI ask (queries)."""

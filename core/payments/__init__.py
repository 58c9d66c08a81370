"""Charging orders through payment gateways, with retries, failover and circuit breakers."""

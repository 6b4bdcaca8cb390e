"""Behavioural signals computed in Python from the dbt marts (EASE) and the refresh that publishes them."""

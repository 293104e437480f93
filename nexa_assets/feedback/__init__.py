"""Weakness detection and targeted prompt requests: the feedback half of the loop."""

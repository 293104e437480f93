"""Test and benchmark doubles: the scripted OpenAI-compatible server. Product code never imports this package."""

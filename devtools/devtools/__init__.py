"""Local development tools: the one-command runner and the SMTP sink."""

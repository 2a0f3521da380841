"""Identity: accounts, businesses, login sessions, one-time tokens, access tokens."""

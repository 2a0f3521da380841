"""Who may see and buy an offering, from the read model of the client book."""

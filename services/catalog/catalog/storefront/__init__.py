"""What a visitor or a client sees: packages, an offering, a collection, their menu."""

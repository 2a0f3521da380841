"""Client groups: named subsets of a business's clients."""

"""The coach's activity feed: purchases, failed payments and refunds, with totals."""

"""Who a business can write to: its clients and groups, as the clients service announces them."""

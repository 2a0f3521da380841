"""The catalog service: what a business offers, who may see and buy it, at what price."""

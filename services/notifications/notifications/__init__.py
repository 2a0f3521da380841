"""Notifications service: the emails other services' events call for, the audience read
model of each business's clients, unsubscribes, and coaches' promotional campaigns."""

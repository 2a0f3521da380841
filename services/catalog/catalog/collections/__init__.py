"""Collections: ordered, named sets of offerings (a page, or a menu entry in the app)."""

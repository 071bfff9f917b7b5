"""The generic training and evaluation machinery every model plugs into."""

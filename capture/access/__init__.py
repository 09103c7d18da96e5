"""Who may come in: owners and API tokens."""

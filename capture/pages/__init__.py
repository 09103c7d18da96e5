"""The page format and the owner's page service."""

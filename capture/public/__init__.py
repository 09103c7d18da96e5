"""What a visitor meets: the opt-in page, the embedded form, the URLs inside emails, the health check."""

"""What every request and answer goes through: error pages, security headers, request hygiene, rate limits, log redaction."""

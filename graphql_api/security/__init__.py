"""Who may ask what: tokens and roles, query limits, the view rate limit."""

"""Access control: API keys with scopes, and the tenant (owner) each key acts for."""

"""Live-commerce recommendation and precision marketing."""

"""Small shared building blocks: errors, money, clock, ids, pagination."""

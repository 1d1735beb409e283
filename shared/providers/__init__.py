"""Provider adapters, named after their technology, behind the `base` ports."""

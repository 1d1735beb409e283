"""Everything on the bus: pydantic v2 models in a versioned envelope."""

"""The scheduler: plans each contact's send time and releases due deliveries to the dispatchers."""

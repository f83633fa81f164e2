"""XLNet: config, parameter names, two-stream relative attention, model classes."""

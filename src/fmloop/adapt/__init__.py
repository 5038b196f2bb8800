"""Transfer strategies: which parameters train, at which learning rate."""

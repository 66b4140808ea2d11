"""One module per op family: forward and backward on raw arrays, for every device."""

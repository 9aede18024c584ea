"""Pure array-in/array-out kernels (numpy or torch): no paths, no printing."""

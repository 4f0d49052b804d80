"""Helpers shared by the test files: input builders, the kernel runner and the tolerance rule."""

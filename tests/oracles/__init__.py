"""Reference implementations the tests compare production code against; never imported by it."""

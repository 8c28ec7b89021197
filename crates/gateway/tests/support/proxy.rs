//! A TCP fault proxy for backplane fault tests.

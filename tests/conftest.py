"""One hypothesis profile for the whole suite: no deadline (numba compiles on first use and
gradient checks are slow by design), no health check for slow data generation.  Tests
set only how many examples they draw."""
from hypothesis import HealthCheck, settings

settings.register_profile("l0ref", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("l0ref")

"""On PYTHONPATH only for tools/redun_suite.sh: redun's tests start worker processes (process
executor, subrun, fork/spawn tests) that import redun.tests.utils, which imports moto<5's
per-service decorators. moto 5 (needed by objstore's own S3 tests) merged them into mock_aws, so
the old names become aliases of it in every process, not only the one pytest runs in."""

try:
    import moto
except ImportError:  # pragma: no cover - moto is a test dependency
    moto = None

if moto is not None:
    for _name in ("mock_s3", "mock_logs"):
        if not hasattr(moto, _name):
            setattr(moto, _name, moto.mock_aws)
